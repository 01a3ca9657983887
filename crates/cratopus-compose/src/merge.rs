//! Merging the shaped answers of an endpoint's backends into one object (KrakenD's aggregation).
//!
//! KrakenD's rules, as its merger applies them (lura's `proxy/merging.go`):
//! - the answers' top-level keys are put together in one object; there is no deep merge, so a
//!   key two backends both have holds one backend's value (use `group` to keep both);
//! - a backend that failed (error, timeout, bad body) adds nothing, and a backend that was never
//!   called (a sequential chain stopped before it) neither; the answer is then incomplete;
//! - if no backend answered, there is no answer at all: the endpoint fails (KrakenD: 500, or
//!   what the error policy says).
//!
//! Where KrakenD is left to chance this is fixed: on a key collision the later backend *in the
//! config* wins (KrakenD: whichever answered last), so the same answers always merge the same.
//! `complete` is true when every backend answered; KrakenD's `X-KrakenD-Completed` is also
//! `false` for a complete answer that happens to be `{}` — that quirk is not copied.

use serde_json::{Map, Value};

/// The answers of one request's backends as they arrive, in any order, merged by
/// [`Aggregate::finish`] in the backends' config order. `E` is the engine's failure type.
#[derive(Debug)]
pub struct Aggregate<E> {
    slots: Vec<Slot<E>>,
}

#[derive(Debug)]
enum Slot<E> {
    Pending,
    Answered(Map<String, Value>),
    Failed(E),
}

/// The merged answer, and what is missing from it.
#[derive(Debug)]
pub struct Merged<E> {
    /// The merged object; `{}` when no backend answered.
    pub data: Map<String, Value>,
    /// Every backend answered.
    pub complete: bool,
    /// How many backends answered.
    pub answered: usize,
    /// The failures, by backend index, in config order.
    pub failures: Vec<(usize, E)>,
}

impl<E> Merged<E> {
    /// No backend answered: the endpoint has nothing to return and fails.
    pub fn is_failure(&self) -> bool {
        self.answered == 0
    }
}

impl<E> Aggregate<E> {
    /// An aggregate for `backends` backends, none answered yet.
    pub fn new(backends: usize) -> Self {
        Aggregate {
            slots: (0..backends).map(|_| Slot::Pending).collect(),
        }
    }

    /// Backend `index` answered with `data` (already shaped). An index out of range is ignored.
    pub fn answered(&mut self, index: usize, data: Map<String, Value>) {
        if let Some(s) = self.slots.get_mut(index) {
            *s = Slot::Answered(data);
        }
    }

    /// Backend `index` failed.
    pub fn failed(&mut self, index: usize, error: E) {
        if let Some(s) = self.slots.get_mut(index) {
            *s = Slot::Failed(error);
        }
    }

    /// The answer of backend `index` so far, for a sequential endpoint's later URLs.
    pub fn answer(&self, index: usize) -> Option<&Map<String, Value>> {
        match self.slots.get(index) {
            Some(Slot::Answered(m)) => Some(m),
            _ => None,
        }
    }

    /// The answers so far, by index (`None` for a backend without one), for
    /// [`crate::template::UrlTemplate::render`].
    pub fn answers(&self) -> Vec<Option<&Map<String, Value>>> {
        (0..self.slots.len()).map(|i| self.answer(i)).collect()
    }

    /// Merges what arrived; a backend still pending counts as missing.
    pub fn finish(self) -> Merged<E> {
        let total = self.slots.len();
        let mut data: Option<Map<String, Value>> = None;
        let mut answered = 0;
        let mut failures = Vec::new();
        for (i, slot) in self.slots.into_iter().enumerate() {
            match slot {
                Slot::Pending => {}
                Slot::Failed(e) => failures.push((i, e)),
                Slot::Answered(m) => {
                    answered += 1;
                    match &mut data {
                        // The first answer is taken as it is, not copied.
                        None => data = Some(m),
                        Some(d) => d.extend(m),
                    }
                }
            }
        }
        Merged {
            data: data.unwrap_or_default(),
            complete: answered == total,
            answered,
            failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn later_backend_wins_whatever_the_arrival_order() {
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut agg: Aggregate<&str> = Aggregate::new(3);
            let parts = [
                json!({"a": 0, "x": 0}),
                json!({"b": 1, "x": 1}),
                json!({"c": 2, "x": {"deep": 2}}),
            ];
            for i in order {
                agg.answered(i, map(parts[i].clone()));
            }
            let m = agg.finish();
            assert_eq!(Value::Object(m.data), json!({"a": 0, "b": 1, "c": 2, "x": {"deep": 2}}));
            assert!(m.complete);
            assert_eq!(m.answered, 3);
        }
    }

    #[test]
    fn no_deep_merge() {
        let mut agg: Aggregate<()> = Aggregate::new(2);
        agg.answered(0, map(json!({"user": {"name": "a", "id": 1}})));
        agg.answered(1, map(json!({"user": {"email": "e"}})));
        assert_eq!(Value::Object(agg.finish().data), json!({"user": {"email": "e"}}));
    }

    #[test]
    fn partial_and_total_failure() {
        let mut agg = Aggregate::new(3);
        agg.answered(0, map(json!({"a": 1})));
        agg.failed(2, "timeout");
        assert_eq!(agg.answer(0), Some(&map(json!({"a": 1}))));
        assert_eq!(agg.answers(), vec![Some(&map(json!({"a": 1}))), None, None]);
        let m = agg.finish();
        assert!(!m.complete);
        assert!(!m.is_failure());
        assert_eq!(Value::Object(m.data), json!({"a": 1}));
        assert_eq!(m.failures, [(2, "timeout")]);

        let mut agg = Aggregate::new(2);
        agg.failed(0, "bad json");
        agg.failed(1, "502");
        let m = agg.finish();
        assert!(m.is_failure());
        assert!(!m.complete);
        assert_eq!(m.failures.len(), 2);
        assert_eq!(Value::Object(m.data), json!({}));

        // A complete answer that is `{}` is complete.
        let mut agg: Aggregate<()> = Aggregate::new(1);
        agg.answered(0, Map::new());
        let m = agg.finish();
        assert!(m.complete && !m.is_failure());
    }
}
