//! Printing messages in the protobuf text format the way Caffe's own files look: one field
//! per line in field-number order (as C++ `TextFormat::Printer` does), repeated fields
//! repeated rather than written as `[a, b]` lists, nested messages as `name {` … `}` with a
//! two-space indent, enum values by name, and floats with C++'s `SimpleFtoa` rule (the
//! shortest of `%.6g` / `%.9g` that reads back to the same value).
//!
//! `prost-reflect`'s own printer writes lists as `[…]`, which Caffe-era parsers and
//! readers do not expect, hence this small printer over its reflection API.

use super::prototxt::TextMessage;
use crate::proto::caffe_pool;
use prost_reflect::{DynamicMessage, Kind, Value};
use std::fmt::Write;

/// Prints a message as text. Only fields that are set are printed (proto2 presence), so a
/// value equal to its default is printed when it was set explicitly, as C++ does.
pub fn to_text<M: TextMessage>(message: &M) -> String {
    let desc = caffe_pool()
        .get_message_by_name(M::FULL_NAME)
        .unwrap_or_else(|| panic!("{} is declared in proto/caffe.proto", M::FULL_NAME));
    let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
        .expect("a prost message re-decodes with its own descriptor");
    let mut out = String::new();
    write_message(&mut out, &dynamic, 0);
    out
}

fn write_message(out: &mut String, message: &DynamicMessage, indent: usize) {
    let mut fields: Vec<_> = message.fields().collect();
    fields.sort_by_key(|(f, _)| f.number());
    for (field, value) in fields {
        let kind = field.kind();
        match value {
            Value::List(items) => {
                for item in items {
                    write_field(out, field.name(), item, &kind, indent);
                }
            }
            other => write_field(out, field.name(), other, &kind, indent),
        }
    }
}

fn write_field(out: &mut String, name: &str, value: &Value, kind: &Kind, indent: usize) {
    let pad = " ".repeat(indent);
    if let Value::Message(m) = value {
        let _ = writeln!(out, "{pad}{name} {{");
        write_message(out, m, indent + 2);
        let _ = writeln!(out, "{pad}}}");
        return;
    }
    let text = match value {
        Value::Bool(b) => b.to_string(),
        Value::I32(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::U32(v) => v.to_string(),
        Value::U64(v) => v.to_string(),
        Value::F32(v) => format_f32(*v),
        Value::F64(v) => format_f64(*v),
        Value::String(s) => quote(s.as_bytes()),
        Value::Bytes(b) => quote(b),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) => e
                .get_value(*n)
                .map(|v| v.name().to_string())
                .unwrap_or_else(|| n.to_string()),
            _ => n.to_string(),
        },
        Value::Message(_) | Value::List(_) | Value::Map(_) => String::new(),
    };
    let _ = writeln!(out, "{pad}{name}: {text}");
}

/// Formats like C's `%.{precision}g`: fixed notation unless the decimal exponent is below
/// −4 or at least the precision, trailing zeros removed, exponents with two digits at least.
fn format_g(v: f64, precision: usize) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{:.*e}", precision - 1, v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= precision as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.unsigned_abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

fn format_special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("nan".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        None
    }
}

/// A float as C++ `SimpleFtoa` prints it: `%.6g`, or `%.9g` when 6 digits do not read back
/// to the same f32 (so `0.0001`, `1e-05`, `0.75`, `1`).
pub fn format_f32(v: f32) -> String {
    format_special(v as f64).unwrap_or_else(|| {
        let short = format_g(v as f64, 6);
        if short.parse::<f32>().ok() == Some(v) {
            short
        } else {
            format_g(v as f64, 9)
        }
    })
}

/// A double as C++ `SimpleDtoa` prints it: `%.15g`, or `%.17g` when needed to read back.
pub fn format_f64(v: f64) -> String {
    format_special(v).unwrap_or_else(|| {
        let short = format_g(v, 15);
        if short.parse::<f64>().ok() == Some(v) {
            short
        } else {
            format_g(v, 17)
        }
    })
}

/// Double-quotes a string with C escapes for quotes, backslashes and control bytes; UTF-8
/// text is kept as is (the parser reads it back unchanged).
fn quote(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            for c in text.chars() {
                match c {
                    '"' => s.push_str("\\\""),
                    '\\' => s.push_str("\\\\"),
                    '\n' => s.push_str("\\n"),
                    '\r' => s.push_str("\\r"),
                    '\t' => s.push_str("\\t"),
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                        let _ = write!(s, "\\{:03o}", c as u32);
                    }
                    c => s.push(c),
                }
            }
        }
        Err(_) => {
            for &b in bytes {
                match b {
                    b'"' => s.push_str("\\\""),
                    b'\\' => s.push_str("\\\\"),
                    0x20..=0x7e => s.push(b as char),
                    _ => {
                        let _ = write!(s, "\\{b:03o}");
                    }
                }
            }
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_cpp_simple_ftoa() {
        // Expected strings are C's printf("%.6g") / ("%.9g") results, derived by hand.
        let cases: [(f32, &str); 10] = [
            (1.0, "1"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (0.75, "0.75"),
            (0.1, "0.1"),
            (100.0, "100"),
            (1e7, "1e+07"),
            (-2.5, "-2.5"),
            (5e-5, "5e-05"),
            // Two f32 steps above 0.1 (0.1 + 2^-26): 6 digits read back as 0.1, so 9 are
            // printed.
            (f32::from_bits(0.1f32.to_bits() + 2), "0.100000016"),
        ];
        for (v, want) in cases {
            assert_eq!(format_f32(v), want, "{v:e}");
        }
        assert_eq!(format_f32(f32::INFINITY), "inf");
        assert_eq!(format_f64(-1.0), "-1");
        assert_eq!(format_f64(1e-8), "1e-08");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote(b"a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(quote("é".as_bytes()), "\"é\"");
        assert_eq!(quote(&[0xff, b'a']), "\"\\377a\"");
    }
}
