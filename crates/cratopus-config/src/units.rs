//! Human units in config values: durations (`250ms`, `5s`, `2m`, `1h`) and sizes
//! (`512`, `64KiB`, `10MB`, `1GiB`).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// A duration written with a unit; a bare integer is seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Dur {
        Dur(Duration::from_millis(ms))
    }
}

/// Parses `250ms`, `1.5s`, `5s`, `2m`, `1h`, `1d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{s}`: expected a number with a unit such as 500ms, 5s, 2m"))?;
    let mult = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "us" | "µs" => 0.000_001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "invalid duration unit `{other}` in `{s}`: use ms, s, m, h or d"
            ));
        }
    };
    let secs = n * mult;
    if !secs.is_finite() || !(0.0..=1.0e9).contains(&secs) {
        return Err(format!("duration `{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `512`, `64KiB`, `64KB`, `10MiB`, `1GiB`, `1G` into bytes. KB/MB/GB are powers of 1000,
/// KiB/MiB/GiB and K/M/G powers of 1024 (as nginx reads `10m`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size `{s}`: expected a number of bytes, or one with a unit such as 64KiB, 10MiB")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "invalid size unit `{other}` in `{s}`: use KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    n.checked_mul(mult).ok_or_else(|| format!("size `{s}` is out of range"))
}

struct UnitVisitor<F>(F, &'static str);

impl<'de, T, F: Fn(&str) -> Result<T, String>> de::Visitor<'de> for UnitVisitor<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.0)(&v.to_string()).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.0)(&v.to_string()).map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.0)(&v.to_string()).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor(
            |s: &str| parse_duration(s).map(Dur),
            "a duration such as 500ms, 5s or 2m",
        ))
    }
}

/// What [`parse_duration`] accepts as a string (a JSON Schema / ECMA-262 pattern).
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*(ms|us|µs|s|min|m|h|d)?\s*$";

/// What [`parse_size`] accepts as a string (a JSON Schema / ECMA-262 pattern).
pub const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*([bB]|[kKmMgG]([iI]?[bB])?)?\s*$";

/// Written as the config writes it (`30s`, `500ms`), so that it reads back the same; used for the
/// defaults in the JSON Schema.
impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let text = if d.subsec_nanos() == 0 {
            format!("{}s", d.as_secs())
        } else if d.subsec_nanos().is_multiple_of(1_000_000) {
            format!("{}ms", d.as_millis())
        } else if d.subsec_nanos().is_multiple_of(1_000) {
            format!("{}us", d.as_micros())
        } else {
            format!("{}s", d.as_secs_f64())
        };
        s.serialize_str(&text)
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Dur").into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // One schema rather than `anyOf` (`pattern` applies to strings only, `minimum` to numbers
        // only), so that an editor reports the pattern, not "expected a number".
        json_schema!({
            "description": "A duration: a number with a unit (`250ms`, `5s`, `1.5s`, `2m`, `1h`, `1d`; also `us`, `min`), or a bare number of seconds.",
            "type": ["string", "number"],
            "pattern": DURATION_PATTERN,
            "patternErrorMessage": "expected a duration such as 500ms, 5s or 2m, or a number of seconds",
            "minimum": 0,
            "maximum": 1_000_000_000,
            "examples": ["500ms", "5s", "2m"]
        })
    }
}

/// A size in bytes written with an optional unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor(
            |s: &str| parse_size(s).map(ByteSize),
            "a size such as 65536, 64KiB or 10MiB",
        ))
    }
}

/// Written as the config writes it: `64KiB`, `10MiB`, `1GiB` when the size is a whole number of
/// those, else a bare number of bytes.
impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n != 0 && n.is_multiple_of(1u64 << shift) {
                return s.serialize_str(&format!("{}{unit}", n >> shift));
            }
        }
        s.serialize_u64(n)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::ByteSize").into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size in bytes: a bare number of bytes, or a number with a unit: `64KiB`, `10MiB`, `1GiB` (powers of 1024; also `K`, `M`, `G`) or `10KB`, `10MB`, `1GB` (powers of 1000). Units ignore case.",
            "type": ["string", "integer"],
            "pattern": SIZE_PATTERN,
            "patternErrorMessage": "expected a size such as 65536, 64KiB or 10MiB",
            "minimum": 0,
            "examples": [65536, "64KiB", "10MiB"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert!(parse_size("12 bananas").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    /// What the schema's defaults are written with reads back as the same value.
    #[test]
    fn serialize_reads_back() {
        for d in [
            Dur::secs(30),
            Dur::secs(0),
            Dur::millis(250),
            Dur::millis(1500),
            Dur(Duration::from_micros(7)),
            Dur(Duration::from_nanos(1_500_000_001)),
        ] {
            let v = serde_json::to_value(d).unwrap();
            assert!(v.is_string(), "{v}");
            let back: Dur = serde_json::from_value(v.clone()).unwrap();
            assert!(
                back.0.abs_diff(d.0) < Duration::from_micros(1),
                "{d:?} → {v} → {back:?}"
            );
        }
        assert_eq!(serde_json::to_value(Dur::secs(30)).unwrap(), "30s");
        assert_eq!(serde_json::to_value(Dur::millis(500)).unwrap(), "500ms");
        for n in [0, 1, 1000, 1024, 65536, 1536, 10 << 20, 3 << 30, 5 << 40, u64::MAX] {
            let v = serde_json::to_value(ByteSize(n)).unwrap();
            let back: ByteSize = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(back, ByteSize(n), "{v}");
        }
        assert_eq!(serde_json::to_value(ByteSize(65536)).unwrap(), "64KiB");
        assert_eq!(serde_json::to_value(ByteSize(1000)).unwrap(), 1000);
    }
}
