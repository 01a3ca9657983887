//! gRPC in the config: the status codes a retry policy names (`on_grpc`), by their names in
//! the gRPC spec written in snake case (`unavailable`, `resource_exhausted`), as Envoy's
//! `retry-on` and gRPC's own service config name them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A gRPC status code (grpc/doc/statuscodes.md), by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code's number, as `grpc-status` carries it.
    pub fn number(self) -> u8 {
        self as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_by_their_spec_names() {
        let codes: Vec<GrpcCode> = crate::test_yaml::parse("[unavailable, resource_exhausted, deadline_exceeded]");
        let n: Vec<u8> = codes.into_iter().map(GrpcCode::number).collect();
        assert_eq!(n, [14, 8, 4]);
    }
}
