//! SRTP policy (the rest arrives with the srtp branch).
use serde::Deserialize;

/// Per trunk and extension: `required` refuses a call without SRTP (488),
/// `offered` uses it when the peer does, `off` never.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    #[default]
    Off,
    Offered,
    Required,
}
