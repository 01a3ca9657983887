//! Why the GraphQL guard refused a request, as GraphQL clients expect to read it.
//!
//! The codes are Apollo Router's for the same refusals (`GRAPHQL_PARSE_FAILED`,
//! `MAX_DEPTH_LIMIT`, `COST_ESTIMATED_TOO_EXPENSIVE`, `PERSISTED_QUERY_NOT_FOUND`, …), so that
//! clients and dashboards built for it read ours unchanged. The gateway's error module renders
//! them as `{"errors":[{"message","extensions":{"code"}}]}`.

/// The kinds of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Not a GraphQL request: bad JSON, no query, `variables` not a map.
    InvalidRequest,
    /// A body of a type the guard cannot read.
    ContentType,
    /// A method other than GET and POST, or a mutation sent with GET.
    Method,
    Parse,
    /// More tokens than `max_tokens`, or nested past what the parser reads.
    TooLarge,
    Validation,
    UnknownOperation,
    Depth,
    Cost,
    Aliases,
    RootFields,
    Introspection,
    Batch,
    BatchingOff,
    NotInList,
    /// APQ: a hash the store does not hold, and no query; the client sends the query next.
    PersistedNotFound,
    /// APQ: the query's hash is not the one given.
    HashMismatch,
    /// A hash without a query on a route without APQ.
    PersistedNotSupported,
}

impl Kind {
    /// Every kind, in the order of [`Kind::index`].
    pub const ALL: [Kind; 18] = [
        Kind::InvalidRequest,
        Kind::ContentType,
        Kind::Method,
        Kind::Parse,
        Kind::TooLarge,
        Kind::Validation,
        Kind::UnknownOperation,
        Kind::Depth,
        Kind::Cost,
        Kind::Aliases,
        Kind::RootFields,
        Kind::Introspection,
        Kind::Batch,
        Kind::BatchingOff,
        Kind::NotInList,
        Kind::PersistedNotFound,
        Kind::HashMismatch,
        Kind::PersistedNotSupported,
    ];

    /// The kind's place in [`Kind::ALL`], for a counter per kind.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The GraphQL error's `extensions.code`.
    pub fn code(self) -> &'static str {
        match self {
            Kind::InvalidRequest => "INVALID_GRAPHQL_REQUEST",
            Kind::ContentType => "INVALID_CONTENT_TYPE",
            Kind::Method => "METHOD_NOT_ALLOWED",
            Kind::Parse => "GRAPHQL_PARSE_FAILED",
            Kind::TooLarge => "GRAPHQL_PARSE_FAILED",
            Kind::Validation => "GRAPHQL_VALIDATION_FAILED",
            Kind::UnknownOperation => "GRAPHQL_UNKNOWN_OPERATION_NAME",
            Kind::Depth => "MAX_DEPTH_LIMIT",
            Kind::Cost => "COST_ESTIMATED_TOO_EXPENSIVE",
            Kind::Aliases => "MAX_ALIASES_LIMIT",
            Kind::RootFields => "MAX_ROOT_FIELDS_LIMIT",
            Kind::Introspection => "INTROSPECTION_DISABLED",
            Kind::Batch => "BATCH_LIMIT_EXCEEDED",
            Kind::BatchingOff => "BATCHING_NOT_ENABLED",
            Kind::NotInList => "PERSISTED_QUERY_NOT_IN_LIST",
            Kind::PersistedNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Kind::HashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            Kind::PersistedNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
        }
    }

    /// The gateway's name of the refusal: the log's `code` and the metrics' `reason`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::InvalidRequest => "graphql_invalid_request",
            Kind::ContentType => "graphql_content_type",
            Kind::Method => "graphql_method",
            Kind::Parse => "graphql_parse_failed",
            Kind::TooLarge => "graphql_too_large",
            Kind::Validation => "graphql_validation_failed",
            Kind::UnknownOperation => "graphql_unknown_operation",
            Kind::Depth => "graphql_depth",
            Kind::Cost => "graphql_cost",
            Kind::Aliases => "graphql_aliases",
            Kind::RootFields => "graphql_root_fields",
            Kind::Introspection => "graphql_introspection",
            Kind::Batch | Kind::BatchingOff => "graphql_batch",
            Kind::NotInList => "graphql_not_in_list",
            Kind::PersistedNotFound => "graphql_persisted_query_not_found",
            Kind::HashMismatch => "graphql_persisted_query_hash_mismatch",
            Kind::PersistedNotSupported => "graphql_persisted_query_not_supported",
        }
    }

    /// The HTTP status: 400 for every refusal of the request's content; 200 for a persisted
    /// query not found, as the APQ protocol answers it (Apollo Router does; Apollo Client's
    /// link reads the error from a 200 and older links stop using APQ for good after a 400);
    /// 405 and 415 for a request that is not GraphQL over HTTP at all.
    pub fn status(self) -> u16 {
        match self {
            Kind::PersistedNotFound => 200,
            Kind::Method => 405,
            Kind::ContentType => 415,
            _ => 400,
        }
    }
}

/// One refusal: its kind and the message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphqlRefusal {
    pub kind: Kind,
    pub message: String,
}

impl GraphqlRefusal {
    pub fn new(kind: Kind, message: String) -> GraphqlRefusal {
        GraphqlRefusal { kind, message }
    }

    /// The response body: `{"errors":[{"message":…,"extensions":{"code":…}}]}`.
    pub fn body(&self) -> Vec<u8> {
        let doc = serde_json::json!({"errors": [{
            "message": self.message,
            "extensions": {"code": self.kind.code()},
        }]});
        let mut b = serde_json::to_vec(&doc).unwrap_or_default();
        b.push(b'\n');
        b
    }
}

impl std::fmt::Display for GraphqlRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_at_its_index() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
    }
}
