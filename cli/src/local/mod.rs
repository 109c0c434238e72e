//! Running fleetbus on one machine with real servers: `fleetbus local-up`, and the
//! kube-apiserver launcher the end-to-end tests share.

pub mod kube_server;
pub mod node;
pub mod node_host;
pub mod supervise;
pub mod up;
