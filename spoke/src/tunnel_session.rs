//! An upgraded stream on the spoke (exec, attach, port-forward): the apiserver's 101 goes to the
//! client, then bytes flow both ways through the shared relay until both directions end. The
//! session's audit event says what ran where, the bytes each way and, when the stream carries
//! it, the command's exit code.

use async_nats::Message;
use fleetbus_nats::tunnel::{Head, Route, Sender, SeqCheck};
use fleetbus_schema::v1::AuditSession;
use hyper_util::rt::TokioIo;

use crate::exit_code::ExitCode;
use crate::tunnel_stream::{Outcome, StreamContext, error_chain, fail, send_head};

/// What the audit event records about a session.
#[derive(Debug, Default, PartialEq)]
pub struct Session {
    /// `exec`, `attach`, `portforward`, or `upgrade` for anything else.
    pub action: &'static str,
    namespace: String,
    pod: String,
    container: String,
    command: Vec<String>,
    ports: Vec<String>,
    protocol: String,
    to_client: u64,
    from_client: u64,
    exit_code: Option<i32>,
}

impl Session {
    /// The session a request path asks for (`/api/v1/namespaces/N/pods/P/exec?command=…`).
    pub fn new(path: &str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut session = Self {
            action: "upgrade",
            ..Self::default()
        };
        if let ["api", "v1", "namespaces", namespace, "pods", pod, sub] = segments[..] {
            session.action = match sub {
                "exec" => "exec",
                "attach" => "attach",
                "portforward" => "portforward",
                _ => "upgrade",
            };
            session.namespace = namespace.to_owned();
            session.pod = pod.to_owned();
        }
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "container" => session.container = value.into_owned(),
                "command" => session.command.push(value.into_owned()),
                "ports" | "port" => session.ports.push(value.into_owned()),
                _ => {}
            }
        }
        session
    }

    /// The audit event's session detail.
    pub fn into_audit(self) -> AuditSession {
        AuditSession {
            namespace: self.namespace,
            pod: self.pod,
            container: self.container,
            command: self.command,
            ports: self.ports,
            protocol: self.protocol,
            bytes_to_client: self.to_client as i64,
            bytes_from_client: self.from_client as i64,
            exit_code: self.exit_code,
        }
    }
}

/// Sends the 101 head, then relays the upgraded connection until the session ends.
pub(crate) async fn relay(
    ctx: &StreamContext,
    out: &mut Sender,
    mut head: Head,
    response: http::Response<hyper::body::Incoming>,
    mut inbound: Route<Message>,
    mut seq: SeqCheck,
    mut session: Session,
) -> Outcome {
    let protocol = response
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    let Some(protocol) = protocol else {
        let message = "the kube-apiserver answered 101 without an Upgrade header";
        return fail(out, 502, message.into()).await;
    };
    let mut exit = ExitCode::for_protocol(&protocol, response.headers());
    head.upgrade = Some(protocol.clone());
    session.protocol = protocol;
    let upgraded = hyper::upgrade::on(response);
    if let Err(outcome) = send_head(out, head).await {
        return outcome;
    }
    let io = match upgraded.await {
        Ok(io) => TokioIo::new(io),
        Err(e) => {
            let message = format!("the upgraded connection failed: {}", error_chain(&e));
            return fail(out, 502, message).await;
        }
    };
    let relayed =
        fleetbus_nats::tunnel::relay(io, out, &mut inbound, &mut seq, &ctx.stop, &mut |bytes| {
            exit.observe(bytes)
        })
        .await;
    session.to_client = relayed.sent;
    session.from_client = relayed.received;
    session.exit_code = exit.code();
    if let Some((code, cause)) = &relayed.failure {
        tracing::warn!(action = session.action, pod = %session.pod, code, %cause, "upgraded session failed");
    }
    Outcome {
        code: 101,
        bytes: relayed.sent + relayed.received,
        message: relayed.failure.map(|(_, m)| m).unwrap_or_default(),
        session: Some(session),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_read_from_the_path() {
        let s = Session::new(
            "/api/v1/namespaces/demo/pods/web-1/exec?command=sh&command=-c&command=exit%203&container=app&stdout=true",
        );
        assert_eq!(s.action, "exec");
        assert_eq!((s.namespace.as_str(), s.pod.as_str()), ("demo", "web-1"));
        assert_eq!(s.container, "app");
        assert_eq!(s.command, ["sh", "-c", "exit 3"]);
        let s = Session::new("/api/v1/namespaces/demo/pods/web-1/portforward?ports=8080");
        assert_eq!(
            (s.action, s.ports.as_slice()),
            ("portforward", &["8080".to_owned()][..])
        );
        assert_eq!(
            Session::new("/api/v1/namespaces/d/pods/p/attach").action,
            "attach"
        );
        assert_eq!(Session::new("/apis/x/v1/things").action, "upgrade");
        assert_eq!(Session::new("").action, "upgrade");
    }
}
