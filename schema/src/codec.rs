//! Decoding protobuf payloads from the network with an error that names the subject.

/// A payload that is not the message it should be.
#[derive(Debug, thiserror::Error)]
#[error("undecodable {message} on {subject}")]
pub struct DecodeError {
    /// Where it arrived.
    pub subject: String,
    /// The expected message type.
    pub message: &'static str,
    /// What prost said.
    #[source]
    pub source: prost::DecodeError,
}

/// Decodes `payload` as `M`; never panics on garbage.
pub fn decode<M: prost::Message + Default>(
    subject: &str,
    payload: &[u8],
) -> Result<M, DecodeError> {
    M::decode(payload).map_err(|source| DecodeError {
        subject: subject.to_owned(),
        message: std::any::type_name::<M>()
            .rsplit("::")
            .next()
            .unwrap_or("message"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::JoinRequest;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let err = decode::<JoinRequest>("fleet.join", &[0xff, 0xff, 0xff, 0x01]).unwrap_err();
        assert_eq!(err.to_string(), "undecodable JoinRequest on fleet.join");
    }
}
