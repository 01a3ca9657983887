//! What an operation asks for, measured from its text: depth, estimated cost, aliases, root
//! fields, introspection.
//!
//! The document is parsed by `apollo-parser` (Apollo's own parser, the one Apollo Router and
//! apollo-compiler stand on): it never panics on bad input, reports every syntax error with its
//! offset, and bounds its own work with a token limit and a recursion limit, which a gateway
//! parsing untrusted text needs before any rule of ours runs.
//!
//! The walk visits each selection set once. A named fragment is measured once and its numbers
//! counted again at every place it is spread (its type condition is its own context, so its
//! numbers do not depend on where it is spread); a fragment being measured that is spread again
//! inside itself is a cycle, refused rather than followed. So the work is linear in the
//! document's size however the fragments multiply what it asks for.

use super::refusal::{GraphqlRefusal, Kind};
use apollo_parser::Parser;
use apollo_parser::cst;
use std::collections::HashMap;

/// The deepest the walk recurses (selection sets and fragment spreads together). The parser's
/// own recursion limit is set to the same, so an operation that gets here is refused as too
/// deep instead of exhausting a worker's stack.
pub const MAX_NESTING: usize = 128;

/// The operation's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Query,
    Mutation,
    Subscription,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Query => "query",
            OpKind::Mutation => "mutation",
            OpKind::Subscription => "subscription",
        }
    }

    /// The root type's name, as a schema names it by default.
    fn root_type(self) -> &'static str {
        match self {
            OpKind::Query => "Query",
            OpKind::Mutation => "Mutation",
            OpKind::Subscription => "Subscription",
        }
    }
}

/// What the config says of one field.
#[derive(Debug, Clone, Default)]
pub struct FieldRule {
    pub cost: Option<u64>,
    pub returns: Option<Box<str>>,
    pub list: bool,
}

/// The cost model, compiled from `cost:`.
#[derive(Debug, Clone)]
pub struct CostModel {
    pub default_field: u64,
    pub default_list_size: u64,
    pub list_arguments: Box<[Box<str>]>,
    /// Parent type → field → rule; the parent `""` holds the rules for any parent.
    pub fields: HashMap<Box<str>, HashMap<Box<str>, FieldRule>>,
    pub types: HashMap<Box<str>, u64>,
}

impl Default for CostModel {
    fn default() -> CostModel {
        CostModel {
            default_field: 1,
            default_list_size: 10,
            list_arguments: ["first", "last", "limit"].map(Box::from).into(),
            fields: HashMap::new(),
            types: HashMap::new(),
        }
    }
}

impl CostModel {
    fn rule(&self, parent: Option<&str>, field: &str) -> Option<&FieldRule> {
        if self.fields.is_empty() {
            return None;
        }
        parent
            .and_then(|p| self.fields.get(p))
            .and_then(|m| m.get(field))
            .or_else(|| self.fields.get("").and_then(|m| m.get(field)))
    }
}

/// The measures of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measures {
    pub name: Option<String>,
    pub kind: OpKind,
    pub depth: u32,
    pub cost: u64,
    pub aliases: u32,
    pub root_fields: u32,
    /// Whether it asks for `__schema` or `__type`.
    pub introspection: bool,
}

/// The numbers of one selection set, relative to it (its own fields are at depth 1).
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    depth: u32,
    cost: u64,
    aliases: u32,
    fields: u32,
    introspection: bool,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.depth = self.depth.max(o.depth);
        self.cost = self.cost.saturating_add(o.cost);
        self.aliases = self.aliases.saturating_add(o.aliases);
        self.fields = self.fields.saturating_add(o.fields);
        self.introspection |= o.introspection;
    }
}

/// Parses `query` and measures the operation `operation_name` names (or its only one).
/// `variables` give list sizes passed as variables.
pub fn measure(
    query: &str,
    operation_name: Option<&str>,
    variables: Option<&serde_json::Map<String, serde_json::Value>>,
    model: &CostModel,
    max_tokens: usize,
) -> Result<Measures, GraphqlRefusal> {
    let tree = Parser::new(query)
        .token_limit(max_tokens)
        .recursion_limit(MAX_NESTING)
        .parse();
    if let Some(e) = tree.errors().next() {
        let (line, col) = line_col(query, e.index());
        let kind = if e.is_limit() { Kind::TooLarge } else { Kind::Parse };
        return Err(GraphqlRefusal::new(
            kind,
            format!("{} at line {line}, column {col}", e.message()),
        ));
    }
    let doc = tree.document();
    let mut ops = Vec::new();
    let mut fragments = HashMap::new();
    for d in doc.definitions() {
        match d {
            cst::Definition::OperationDefinition(op) => ops.push(op),
            cst::Definition::FragmentDefinition(f) => {
                if let Some(name) = f.fragment_name().and_then(|n| n.name()) {
                    fragments.insert(name.text().to_string(), f);
                }
            }
            other => {
                return Err(GraphqlRefusal::new(
                    Kind::Validation,
                    format!("the document has a {}, which a request cannot carry", other.kind()),
                ));
            }
        }
    }
    let op = select(&ops, operation_name)?;
    let kind = match op.operation_type() {
        Some(t) if t.mutation_token().is_some() => OpKind::Mutation,
        Some(t) if t.subscription_token().is_some() => OpKind::Subscription,
        _ => OpKind::Query,
    };
    let name = op.name().map(|n| n.text().to_string());
    let defaults = variable_defaults(op);
    let mut walk = Walk {
        model,
        variables,
        defaults,
        fragments,
        memo: HashMap::new(),
        visiting: Vec::new(),
    };
    let set = op
        .selection_set()
        .ok_or_else(|| GraphqlRefusal::new(Kind::Parse, "the operation has no selection set".into()))?;
    let stats = walk.set(&set, Some(kind.root_type()), 0)?;
    Ok(Measures {
        name,
        kind,
        depth: stats.depth,
        cost: stats.cost,
        aliases: stats.aliases,
        root_fields: stats.fields,
        introspection: stats.introspection,
    })
}

/// The operation to run: the one named, or the only one.
fn select<'a>(
    ops: &'a [cst::OperationDefinition],
    name: Option<&str>,
) -> Result<&'a cst::OperationDefinition, GraphqlRefusal> {
    match name {
        Some(want) => ops
            .iter()
            .find(|o| o.name().is_some_and(|n| n.text() == want))
            .ok_or_else(|| GraphqlRefusal::new(Kind::UnknownOperation, format!("Unknown operation named \"{want}\"."))),
        None => match ops {
            [one] => Ok(one),
            [] => Err(GraphqlRefusal::new(
                Kind::Validation,
                "the document has no operation".into(),
            )),
            _ => Err(GraphqlRefusal::new(
                Kind::Validation,
                "Must provide operation name if query contains multiple operations.".into(),
            )),
        },
    }
}

/// The integer defaults of the operation's variables (`$first: Int = 20`).
fn variable_defaults(op: &cst::OperationDefinition) -> Vec<(String, i64)> {
    let Some(defs) = op.variable_definitions() else {
        return Vec::new();
    };
    defs.variable_definitions()
        .filter_map(|d| {
            let name = d.variable()?.name()?.text().to_string();
            match d.default_value()?.value()? {
                cst::Value::IntValue(i) => Some((name, int(&i)?)),
                _ => None,
            }
        })
        .collect()
}

struct Walk<'a> {
    model: &'a CostModel,
    variables: Option<&'a serde_json::Map<String, serde_json::Value>>,
    defaults: Vec<(String, i64)>,
    fragments: HashMap<String, cst::FragmentDefinition>,
    memo: HashMap<String, Stats>,
    visiting: Vec<String>,
}

impl Walk<'_> {
    fn set(&mut self, set: &cst::SelectionSet, parent: Option<&str>, nesting: usize) -> Result<Stats, GraphqlRefusal> {
        if nesting >= MAX_NESTING {
            return Err(too_deep());
        }
        let mut total = Stats::default();
        for sel in set.selections() {
            match sel {
                cst::Selection::Field(f) => total.add(self.field(&f, parent, nesting)?),
                cst::Selection::InlineFragment(inl) => {
                    let on = inl
                        .type_condition()
                        .and_then(|t| t.named_type())
                        .and_then(|n| n.name())
                        .map(|n| n.text().to_string());
                    if let Some(inner) = inl.selection_set() {
                        total.add(self.set(&inner, on.as_deref().or(parent), nesting + 1)?);
                    }
                }
                cst::Selection::FragmentSpread(s) => {
                    let Some(name) = s.fragment_name().and_then(|n| n.name()) else {
                        continue;
                    };
                    total.add(self.spread(name.text().as_ref(), nesting)?);
                }
            }
        }
        Ok(total)
    }

    fn spread(&mut self, name: &str, nesting: usize) -> Result<Stats, GraphqlRefusal> {
        if let Some(s) = self.memo.get(name) {
            return Ok(*s);
        }
        if self.visiting.iter().any(|v| v == name) {
            return Err(GraphqlRefusal::new(
                Kind::Validation,
                format!("Cannot spread fragment \"{name}\" within itself."),
            ));
        }
        let Some(def) = self.fragments.get(name).cloned() else {
            return Err(GraphqlRefusal::new(
                Kind::Validation,
                format!("Unknown fragment \"{name}\"."),
            ));
        };
        let on = def
            .type_condition()
            .and_then(|t| t.named_type())
            .and_then(|n| n.name())
            .map(|n| n.text().to_string());
        self.visiting.push(name.to_string());
        let stats = match def.selection_set() {
            Some(set) => self.set(&set, on.as_deref(), nesting + 1)?,
            None => Stats::default(),
        };
        self.visiting.pop();
        self.memo.insert(name.to_string(), stats);
        Ok(stats)
    }

    fn field(&mut self, f: &cst::Field, parent: Option<&str>, nesting: usize) -> Result<Stats, GraphqlRefusal> {
        let Some(name) = f.name() else {
            return Ok(Stats::default());
        };
        let name = name.text();
        let name: &str = name.as_ref();
        let introspection = name == "__schema" || name == "__type";
        let rule = self.model.rule(parent, name);
        let returns = rule.and_then(|r| r.returns.as_deref());
        let own = if name == "__typename" {
            0
        } else {
            rule.and_then(|r| r.cost)
                .or_else(|| returns.and_then(|t| self.model.types.get(t).copied()))
                .unwrap_or(self.model.default_field)
        };
        let size = self.list_size(f, rule.is_some_and(|r| r.list));
        let (child, depth) = match f.selection_set() {
            Some(set) => {
                let s = self.set(&set, returns, nesting + 1)?;
                (s, s.depth + 1)
            }
            None => (Stats::default(), 1),
        };
        Ok(Stats {
            depth,
            cost: size.saturating_mul(own.saturating_add(child.cost)),
            aliases: child.aliases.saturating_add(u32::from(f.alias().is_some())),
            fields: 1,
            introspection: introspection || child.introspection,
        })
    }

    /// How many items a field stands for: the largest of its list arguments, the default
    /// list size for a list without one, else 1.
    fn list_size(&self, f: &cst::Field, declared_list: bool) -> u64 {
        let mut found: Option<u64> = None;
        let mut is_list = declared_list;
        if let Some(args) = f.arguments() {
            for a in args.arguments() {
                let Some(n) = a.name() else { continue };
                if !self.model.list_arguments.iter().any(|l| **l == *n.text()) {
                    continue;
                }
                is_list = true;
                let v = match a.value() {
                    Some(cst::Value::IntValue(i)) => int(&i),
                    Some(cst::Value::Variable(v)) => v.name().and_then(|n| self.variable(n.text().as_ref())),
                    _ => None,
                };
                if let Some(v) = v {
                    let v = v.max(0) as u64;
                    found = Some(found.map_or(v, |f| f.max(v)));
                }
            }
        }
        match (is_list, found) {
            (_, Some(n)) => n,
            (true, None) => self.model.default_list_size,
            (false, None) => 1,
        }
    }

    fn variable(&self, name: &str) -> Option<i64> {
        match self.variables.and_then(|v| v.get(name)) {
            Some(v) => v.as_i64(),
            None => self.defaults.iter().find(|(n, _)| n == name).map(|(_, v)| *v),
        }
    }
}

/// An integer literal (beyond `i64` saturated: a list of 10^30 is refused like one of 2^63).
fn int(i: &cst::IntValue) -> Option<i64> {
    f64::try_from(i).ok().map(|f| f as i64)
}

fn too_deep() -> GraphqlRefusal {
    GraphqlRefusal::new(
        Kind::Depth,
        format!("the operation nests deeper than the {MAX_NESTING} levels the gateway reads"),
    )
}

/// 1-based line and column of byte `index` in `text`.
fn line_col(text: &str, index: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..index.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(q: &str) -> Measures {
        measure(q, None, None, &CostModel::default(), 15_000).unwrap_or_else(|e| panic!("{q}: {e:?}"))
    }

    fn refused(q: &str) -> GraphqlRefusal {
        measure(q, None, None, &CostModel::default(), 15_000).unwrap_err()
    }

    #[test]
    fn depth_counts_fields_not_fragments() {
        assert_eq!(m("{ a }").depth, 1);
        assert_eq!(m("{ a { b { c } } }").depth, 3);
        // Inline fragments and spreads add no level of their own.
        assert_eq!(m("{ a { ... on T { b { c } } } }").depth, 3);
        assert_eq!(m("{ a { ...F } } fragment F on T { b { c { d } } }").depth, 4);
        // The deepest branch counts.
        assert_eq!(m("{ a { b } x { y { z { w } } } }").depth, 4);
    }

    #[test]
    fn cost_multiplies_by_list_arguments() {
        // users(first: 10) { name friends(first: 5) { name } }
        // = 10 × (1 + 1 + 5 × (1 + 1)) = 120
        let q = "{ users(first: 10) { name friends(first: 5) { name } } }";
        assert_eq!(m(q).cost, 120);
        // The largest list argument counts; a negative one counts as 0.
        assert_eq!(m("{ a(first: 3, last: 7) }").cost, 7);
        assert_eq!(m("{ a(limit: -4) { b } }").cost, 0);
        // A list argument that is not an integer: the default list size.
        assert_eq!(m("{ a(first: \"x\") }").cost, 10);
        // __typename is free.
        assert_eq!(m("{ __typename a }").cost, 1);
    }

    #[test]
    fn list_sizes_from_variables_and_their_defaults() {
        let model = CostModel::default();
        let q = "query Q($n: Int = 4, $k: Int) { a(first: $n) b(first: $k) }";
        let vars: serde_json::Map<String, serde_json::Value> = serde_json::from_str(r#"{"k": 6}"#).unwrap();
        assert_eq!(measure(q, None, Some(&vars), &model, 1000).unwrap().cost, 4 + 6);
        let vars: serde_json::Map<String, serde_json::Value> = serde_json::from_str(r#"{"n": 50, "k": 6}"#).unwrap();
        assert_eq!(measure(q, None, Some(&vars), &model, 1000).unwrap().cost, 50 + 6);
        // A variable given neither a value nor a default: the default list size.
        assert_eq!(measure(q, None, None, &model, 1000).unwrap().cost, 4 + 10);
    }

    #[test]
    fn field_and_type_overrides_follow_the_parent_type() {
        let mut model = CostModel::default();
        let users = FieldRule {
            cost: None,
            returns: Some("User".into()),
            list: true,
        };
        let search = FieldRule {
            cost: Some(10),
            ..Default::default()
        };
        let any_avatar = FieldRule {
            cost: Some(3),
            ..Default::default()
        };
        model.fields.insert(
            "Query".into(),
            [("users".into(), users), ("search".into(), search)].into(),
        );
        model.fields.insert("".into(), [("avatar".into(), any_avatar)].into());
        model.fields.insert(
            "User".into(),
            [(
                "posts".into(),
                FieldRule {
                    cost: Some(2),
                    ..Default::default()
                },
            )]
            .into(),
        );
        model.types.insert("User".into(), 5);
        // users: a list without a size → 10 × (5 (type User) + posts 2 + avatar 3 + name 1).
        let q = "{ users { posts name avatar } search }";
        assert_eq!(
            measure(q, None, None, &model, 1000).unwrap().cost,
            10 * (5 + 2 + 3 + 1) + 10
        );
        // Under a fragment on User the parent is known too.
        let q = "{ node { ... on User { posts } } }";
        assert_eq!(measure(q, None, None, &model, 1000).unwrap().cost, 1 + 2);
        // A mutation's root type is Mutation: `search` there is not Query.search.
        let q = "mutation { search }";
        assert_eq!(measure(q, None, None, &model, 1000).unwrap().cost, 1);
    }

    #[test]
    fn fragments_count_where_spread() {
        let q = "{ a { ...F } b { ...F } } fragment F on T { x: c d: e }";
        let r = m(q);
        assert_eq!(r.aliases, 4);
        assert_eq!(r.cost, 2 * (1 + 2));
        // Root fields through a fragment spread at the root.
        assert_eq!(m("{ ...R z } fragment R on Query { a b }").root_fields, 3);
    }

    #[test]
    fn fragment_cycles_and_unknown_fragments_are_refused() {
        let e = refused("{ ...A } fragment A on Q { ...B } fragment B on Q { ...A }");
        assert_eq!(e.kind, Kind::Validation);
        assert!(e.message.contains("within itself"), "{}", e.message);
        let e = refused("{ ...A } fragment A on Q { a { ...A } }");
        assert!(e.message.contains("within itself"), "{}", e.message);
        let e = refused("{ ...Nope }");
        assert!(e.message.contains("Unknown fragment"), "{}", e.message);
    }

    #[test]
    fn exponential_fragments_are_measured_in_linear_time() {
        // Each level spreads the next twice: 2^40 fields asked for, measured once each.
        let mut q = String::from("{ ...F0 }");
        for i in 0..40 {
            q.push_str(&format!(
                " fragment F{i} on Q {{ a: x {{ ...F{n} }} b: x {{ ...F{n} }} }}",
                n = i + 1
            ));
        }
        q.push_str(" fragment F40 on Q { leaf }");
        let r = m(&q);
        assert_eq!(r.depth, 41);
        assert_eq!(r.aliases, u32::MAX); // saturated
        assert!(r.cost > 1 << 40);
    }

    #[test]
    fn operations_are_chosen_by_name() {
        let q = "query A { a } mutation B { b { c } }";
        let model = CostModel::default();
        let b = measure(q, Some("B"), None, &model, 1000).unwrap();
        assert_eq!((b.kind, b.depth, b.name.as_deref()), (OpKind::Mutation, 2, Some("B")));
        assert_eq!(refused(q).kind, Kind::Validation);
        let e = measure(q, Some("C"), None, &model, 1000).unwrap_err();
        assert_eq!(e.kind, Kind::UnknownOperation);
    }

    #[test]
    fn introspection_is_seen_but_typename_is_not() {
        assert!(m("{ __schema { types { name } } }").introspection);
        assert!(m("{ a { ...F } } fragment F on T { __type(name: \"X\") { name } }").introspection);
        assert!(!m("{ __typename a { __typename } }").introspection);
    }

    #[test]
    fn syntax_errors_and_limits_say_where() {
        let e = refused("{ a \n  b( }");
        assert_eq!(e.kind, Kind::Parse);
        assert!(e.message.contains("line 2"), "{}", e.message);
        let e = measure("{ a b c d e f }", None, None, &CostModel::default(), 4).unwrap_err();
        assert_eq!(e.kind, Kind::TooLarge);
        let deep = format!("{}{}", "{ a ".repeat(200), "}".repeat(200));
        assert!(matches!(
            refused(&deep).kind,
            Kind::TooLarge | Kind::Depth | Kind::Parse
        ));
        assert!(refused("type T { a: Int }").message.contains("cannot carry"));
    }

    proptest::proptest! {
        /// Any text made of GraphQL's tokens is measured or refused, never a panic, and the
        /// walk ends (fragment cycles included).
        #[test]
        fn arbitrary_documents_never_panic(tokens in proptest::collection::vec(0usize..TOKENS.len(), 0..80)) {
            let q: Vec<&str> = tokens.iter().map(|i| TOKENS[*i]).collect();
            let _ = measure(&q.join(" "), None, None, &CostModel::default(), 1000);
        }

        #[test]
        fn arbitrary_text_never_panics(q in "\\PC{0,200}") {
            let _ = measure(&q, Some("A"), None, &CostModel::default(), 1000);
        }
    }

    const TOKENS: &[&str] = &[
        "{",
        "}",
        "(",
        ")",
        "...",
        "on",
        "fragment",
        "F",
        "G",
        "query",
        "mutation",
        "A",
        "a",
        "b:",
        "first:",
        "$n",
        "10",
        "-1",
        "99999999999999999999",
        "__schema",
        "__typename",
        "...F",
        "...G",
        "T",
        "@skip(if: true)",
        "\"s\"",
        "[",
        "]",
        ",",
        "=",
    ];
}
