//! NATS JWTs (`{"typ":"JWT","alg":"ed25519-nkey"}`): decoding the server's authorization
//! request and encoding the user and authorization-response claims, signed with an nkey.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A JWT that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts with JSON inside.
    #[error("malformed JWT")]
    Malformed,
    /// The claims are not an authorization request.
    #[error("not an authorization request: {0}")]
    NotAuthRequest(String),
    /// nkeys could not sign.
    #[error("signing failed")]
    Sign,
}

/// What fleetbus reads from the server's `authorization_request` claims.
#[derive(Debug, Clone, Default)]
pub struct AuthRequest {
    /// The public nkey the server made for this connection: the user JWT's `sub`.
    pub user_nkey: String,
    /// The server's id: the response's `aud`.
    pub server_id: String,
    /// The verified client certificate (PEM), when TLS verify is on.
    pub client_cert_pem: Option<String>,
    /// The connection's self-declared name (informational only).
    pub client_name: String,
    /// The client's address (informational only).
    pub client_host: String,
    /// What connects: `Client`, or `Leafnode` for a leaf node server.
    pub client_kind: String,
}

#[derive(Deserialize)]
struct RequestClaims {
    nats: RequestNats,
}

#[derive(Deserialize)]
struct RequestNats {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    user_nkey: String,
    #[serde(default)]
    server_id: ServerId,
    #[serde(default)]
    client_info: ClientInfo,
    #[serde(default)]
    client_tls: ClientTls,
}

#[derive(Deserialize, Default)]
struct ServerId {
    #[serde(default)]
    id: String,
}

#[derive(Deserialize, Default)]
struct ClientInfo {
    #[serde(default)]
    host: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize, Default)]
struct ClientTls {
    #[serde(default)]
    verified_chains: Vec<Vec<String>>,
    #[serde(default)]
    certs: Vec<String>,
}

/// Decodes the server's request. Its signature is not checked: the request arrives on
/// `$SYS.REQ.USER.AUTH` in the callout account, which only the server can publish to.
pub fn decode_auth_request(token: &[u8]) -> Result<AuthRequest, JwtError> {
    let claims: RequestClaims = serde_json::from_slice(&payload_of(token)?)
        .map_err(|e| JwtError::NotAuthRequest(e.to_string()))?;
    let nats = claims.nats;
    if nats.kind != "authorization_request" {
        return Err(JwtError::NotAuthRequest(format!("type {:?}", nats.kind)));
    }
    let client_cert_pem = nats
        .client_tls
        .verified_chains
        .into_iter()
        .find_map(|chain| chain.into_iter().next())
        .or_else(|| nats.client_tls.certs.into_iter().next());
    Ok(AuthRequest {
        user_nkey: nats.user_nkey,
        server_id: nats.server_id.id,
        client_cert_pem,
        client_name: nats.client_info.name,
        client_host: nats.client_info.host,
        client_kind: nats.client_info.kind,
    })
}

fn payload_of(token: &[u8]) -> Result<Vec<u8>, JwtError> {
    let text = std::str::from_utf8(token).map_err(|_| JwtError::Malformed)?;
    let mut parts = text.trim().split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)
}

/// Publish and subscribe allow lists of a user, and how it may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Permissions {
    /// Subjects the user may publish to.
    pub publish: Vec<String>,
    /// Subjects the user may subscribe to.
    pub subscribe: Vec<String>,
    /// Connection types nats-server admits for the user ([`STANDARD`], [`LEAFNODE`]); empty
    /// admits every type.
    pub connection_types: Vec<&'static str>,
}

/// A client connection (`allowed_connection_types` in a user JWT).
pub const STANDARD: &str = "STANDARD";
/// A leaf node server's connection, which carries its local clients' traffic.
pub const LEAFNODE: &str = "LEAFNODE";

/// Encodes a user JWT for `user_nkey` in `account` (the account's name in server config mode).
pub fn user_jwt(
    issuer: &nkeys::KeyPair,
    user_nkey: &str,
    account: &str,
    name: &str,
    permissions: &Permissions,
    expires_at: Option<i64>,
) -> Result<String, JwtError> {
    let mut claims = json!({
        "iat": now(),
        "iss": issuer.public_key(),
        "sub": user_nkey,
        "aud": account,
        "name": name,
        "nats": {
            "pub": { "allow": permissions.publish },
            "sub": { "allow": permissions.subscribe },
            "allowed_connection_types": permissions.connection_types,
            "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        },
    });
    if let Some(exp) = expires_at {
        claims["exp"] = json!(exp);
    }
    encode(issuer, claims)
}

/// Encodes the `authorization_response` for a request: a user JWT or an error.
pub fn auth_response(
    issuer: &nkeys::KeyPair,
    request: &AuthRequest,
    outcome: Result<String, String>,
) -> Result<String, JwtError> {
    let mut nats = json!({ "type": "authorization_response", "version": 2 });
    match outcome {
        Ok(user_jwt) => nats["jwt"] = json!(user_jwt),
        Err(reason) => nats["error"] = json!(reason),
    }
    encode(
        issuer,
        json!({
            "iat": now(),
            "iss": issuer.public_key(),
            "sub": request.user_nkey,
            "aud": request.server_id,
            "nats": nats,
        }),
    )
}

fn encode(issuer: &nkeys::KeyPair, mut claims: Value) -> Result<String, JwtError> {
    // jti: base32 of the SHA-256 of the claims without it, as nats-io/jwt does.
    let digest = Sha256::digest(claims.to_string().as_bytes());
    claims["jti"] = json!(data_encoding::BASE32_NOPAD.encode(&digest));
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{body}");
    let signature = issuer
        .sign(signing_input.as_bytes())
        .map_err(|_| JwtError::Sign)?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_jwt(claims: Value) -> String {
        let server = nkeys::KeyPair::new_server();
        encode(&server, claims).unwrap()
    }

    #[test]
    fn reads_the_verified_client_certificate() {
        let token = request_jwt(json!({
            "aud": "nats-authorization-request",
            "nats": {
                "type": "authorization_request",
                "user_nkey": "UABC",
                "server_id": { "id": "NSERVER", "name": "n1" },
                "client_info": { "host": "127.0.0.1", "name": "spoke" },
                "client_tls": { "verified_chains": [["PEM-LEAF", "PEM-CA"]] },
            }
        }));
        let req = decode_auth_request(token.as_bytes()).unwrap();
        assert_eq!(req.user_nkey, "UABC");
        assert_eq!(req.server_id, "NSERVER");
        assert_eq!(req.client_cert_pem.as_deref(), Some("PEM-LEAF"));
    }

    #[test]
    fn refuses_garbage_and_other_claims() {
        assert!(matches!(
            decode_auth_request(b"x.y"),
            Err(JwtError::Malformed)
        ));
        assert!(matches!(
            decode_auth_request(b"\xff\xfe"),
            Err(JwtError::Malformed)
        ));
        let other = request_jwt(json!({ "nats": { "type": "user" } }));
        assert!(matches!(
            decode_auth_request(other.as_bytes()),
            Err(JwtError::NotAuthRequest(_))
        ));
    }

    #[test]
    fn response_is_signed_by_the_issuer() {
        let issuer = nkeys::KeyPair::new_account();
        let req = AuthRequest {
            user_nkey: "UXYZ".into(),
            server_id: "NSRV".into(),
            ..Default::default()
        };
        let perms = Permissions {
            publish: vec!["a.>".into()],
            subscribe: vec!["b".into()],
            connection_types: vec![STANDARD, LEAFNODE],
        };
        let user = user_jwt(&issuer, "UXYZ", "FLEET", "spoke:c1", &perms, Some(42)).unwrap();
        let resp = auth_response(&issuer, &req, Ok(user.clone())).unwrap();
        let parts: Vec<&str> = resp.split('.').collect();
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        issuer
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        let claims: Value = serde_json::from_slice(&payload_of(resp.as_bytes()).unwrap()).unwrap();
        assert_eq!(claims["aud"], "NSRV");
        assert_eq!(claims["nats"]["jwt"], user.as_str());
        let user_claims: Value =
            serde_json::from_slice(&payload_of(user.as_bytes()).unwrap()).unwrap();
        assert_eq!(user_claims["aud"], "FLEET");
        assert_eq!(user_claims["exp"], 42);
        assert_eq!(user_claims["nats"]["pub"]["allow"][0], "a.>");
        assert_eq!(
            user_claims["nats"]["allowed_connection_types"],
            json!(["STANDARD", "LEAFNODE"])
        );
    }
}
