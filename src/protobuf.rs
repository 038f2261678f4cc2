//! The protobuf wire format, by hand: the field keys, varints and length-delimited fields the
//! Riemann and Prometheus remote-write encoders are built from, and a walk over the fields of an
//! encoded message.
//!
//! Only what those messages need: field numbers below 16 (a one-byte key), and the varint,
//! fixed64, fixed32 and bytes wire types (groups are refused when decoding).

/// Wire type of integers, bools and zigzag integers.
pub const VARINT: u8 = 0;
/// Wire type of eight little-endian bytes (doubles).
pub const FIXED64: u8 = 1;
/// Wire type of length-delimited bytes (strings, nested messages).
pub const BYTES: u8 = 2;
/// Wire type of four little-endian bytes (floats).
pub const FIXED32: u8 = 5;

/// Appends the one-byte key of `field` (below 16) with wire type `wire`.
pub fn key(field: u8, wire: u8, out: &mut Vec<u8>) {
    debug_assert!(field < 16, "field {field} needs a longer key");
    out.push(field << 3 | wire);
}

/// Appends a varint field.
pub fn varint_field(field: u8, v: u64, out: &mut Vec<u8>) {
    key(field, VARINT, out);
    varint(v, out);
}

/// Appends a length-delimited field holding `bytes`.
pub fn bytes_field(field: u8, bytes: &[u8], out: &mut Vec<u8>) {
    key(field, BYTES, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Appends a fixed32 field.
pub fn fixed32_field(field: u8, v: u32, out: &mut Vec<u8>) {
    key(field, FIXED32, out);
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a fixed64 field.
pub fn fixed64_field(field: u8, v: u64, out: &mut Vec<u8>) {
    key(field, FIXED64, out);
    out.extend_from_slice(&v.to_le_bytes());
}

/// The bytes of a length-delimited field whose content is `len` bytes: a one-byte key, the length
/// and the content.
pub fn bytes_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Appends `v` as a varint: seven bits a byte, low bits first.
pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The bytes [`varint`] appends for `v`.
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A signed integer as `sint64` encodes it, so that small negative numbers stay short.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A varint (integers, bools, zigzag integers).
    Varint(u64),
    /// Eight little-endian bytes (doubles).
    Fixed64(u64),
    /// Four little-endian bytes (floats).
    Fixed32(u32),
    /// Length-delimited bytes (strings, nested messages).
    Bytes(&'a [u8]),
}

/// The fields of an encoded message, in order, as `(field number, value)`; ends at the first
/// malformed field with an error.
pub struct Fields<'a>(pub &'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = next_field(&mut self.0);
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

fn next_field<'a>(bytes: &mut &'a [u8]) -> Result<(u64, Value<'a>), String> {
    let tag = read_varint(bytes)?;
    let (field, wire) = (tag >> 3, (tag & 7) as u8);
    let value = match wire {
        VARINT => Value::Varint(read_varint(bytes)?),
        BYTES => {
            let len = read_varint(bytes)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= bytes.len())
                .ok_or("a length runs past the end")?;
            let (value, rest) = bytes.split_at(len);
            *bytes = rest;
            Value::Bytes(value)
        }
        FIXED64 => Value::Fixed64(u64::from_le_bytes(take(bytes)?)),
        FIXED32 => Value::Fixed32(u32::from_le_bytes(take(bytes)?)),
        other => return Err(format!("unsupported wire type {other} for field {field}")),
    };
    Ok((field, value))
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], String> {
    let (head, rest) = bytes
        .split_first_chunk::<N>()
        .ok_or("a fixed-size field runs past the end")?;
    *bytes = rest;
    Ok(*head)
}

/// Reads a varint from the front of `bytes`, moving past it.
pub fn read_varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Ok(v);
        }
    }
    Err("a truncated or overlong varint".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_match_the_protobuf_spec() {
        let mut out = Vec::new();
        varint(300, &mut out);
        assert_eq!(out, [0xac, 0x02]);
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            varint(v, &mut out);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(read_varint(&mut &out[..]), Ok(v));
        }
        assert_eq!([zigzag(0), zigzag(-1), zigzag(1), zigzag(-2)], [0, 1, 2, 3]);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn fields_read_back_what_was_written() {
        let mut msg = Vec::new();
        varint_field(1, 150, &mut msg);
        fixed64_field(2, 2.5f64.to_bits(), &mut msg);
        fixed32_field(3, 7, &mut msg);
        bytes_field(4, b"abc", &mut msg);
        assert_eq!(msg[..3], [0x08, 0x96, 0x01]);
        assert_eq!(bytes_len(3), 5);
        let fields: Vec<_> = Fields(&msg).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            fields,
            [
                (1, Value::Varint(150)),
                (2, Value::Fixed64(2.5f64.to_bits())),
                (3, Value::Fixed32(7)),
                (4, Value::Bytes(b"abc")),
            ]
        );
    }

    #[test]
    fn malformed_fields_end_the_walk_with_an_error() {
        for bad in [
            &[0x1a, 5, b'a'][..],
            &[0x10],
            &[
                0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
            &[0x0b],
            &[0x39, 1, 2],
        ] {
            let fields: Vec<_> = Fields(bad).collect();
            assert_eq!(fields.len(), 1, "{bad:?}");
            assert!(fields[0].is_err(), "{bad:?}");
        }
    }
}
