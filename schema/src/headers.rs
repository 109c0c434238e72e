//! NATS header names that are part of the contract.

/// Set by the hub on API replies that failed (NATS micro convention).
pub const SERVICE_ERROR: &str = "Nats-Service-Error";
/// Numeric code of a failed API reply (NATS micro convention; HTTP-like values).
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
/// Correlates a request across hub, spoke and audit events.
pub const REQUEST_ID: &str = "Fleetbus-Request-Id";
