//! Who may do what in Cairn, decided by biscuit datalog and explainable.
//!
//! - [`claims`]: roles, SMART v2-style scopes (`patient|user|system/<Type|*>.<cruds>`),
//!   purposes of use, and the rules each role's tokens follow ([`Claims::new`]).
//! - [`SigningKey::issue`] signs a token stating the claims as facts; [`attenuate`] narrows a
//!   token offline (patient, lifetime, read-only) without any key.
//! - [`Gate::authenticate`] verifies a token (signature, revocation, expiry) into a
//!   [`Caller`]; [`Gate::authorize`] decides a request by [`POLICY`] and every block's checks,
//!   and says why it refused.
//! - Port [`TokenRegistry`]: issuances (never the tokens) and revocations.
//!
//! No IO, no async runtime, no global state: another service can verify Cairn tokens with
//! this crate and the server's public key alone.

pub mod claims;
#[cfg(any(test, feature = "contract"))]
pub mod contract;
mod error;
pub mod fakes;
mod gate;
mod ports;
mod token;

pub use claims::{
    Action, Actions, ClaimRequest, Claims, Purpose, Role, Scope, ScopeContext, Subject,
    parse_lifetime,
};
pub use error::{AccessError, ClaimError};
pub use gate::{Allowed, Caller, Confinement, Gate, Need, Operation, POLICY, RevokedIds};
pub use ports::{Issuance, RegistryFailure, RevocationStamp, TokenRegistry};
pub use token::{
    BearerToken, IssuedToken, Narrowing, READ_ONLY_CHECK, SigningKey, VerifyingKey, attenuate,
};

#[cfg(test)]
mod tests;
