//! Trace and span ids: fixed-size newtypes with fallible construction and hex display.

use std::fmt;
use std::str::FromStr;

/// Why bytes or a string could not become an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be {expected} bytes, got {actual}")]
    WrongLength {
        kind: &'static str,
        expected: usize,
        actual: usize,
    },
    #[error("{kind} must not be all zeros")]
    AllZero { kind: &'static str },
    #[error("{kind} is not valid hex: {reason}")]
    NotHex { kind: &'static str, reason: String },
}

macro_rules! id_type {
    ($name:ident, $len:expr, $kind:expr) => {
        #[doc = concat!("A ", $kind, ": ", stringify!($len), " bytes, never all zeros.")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex, as Jaeger and OTLP/JSON spell ids.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = IdError;

            fn try_from(bytes: &[u8]) -> Result<Self, IdError> {
                let array: [u8; $len] = bytes.try_into().map_err(|_| IdError::WrongLength {
                    kind: $kind,
                    expected: $len,
                    actual: bytes.len(),
                })?;
                if array.iter().all(|b| *b == 0) {
                    return Err(IdError::AllZero { kind: $kind });
                }
                Ok(Self(array))
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            /// Parses hex, case-insensitively. Shorter ids are left-padded with zeros, as Jaeger
            /// does for 64-bit trace ids.
            fn from_str(text: &str) -> Result<Self, IdError> {
                if text.len() > 2 * $len || text.is_empty() {
                    return Err(IdError::WrongLength {
                        kind: $kind,
                        expected: $len,
                        actual: text.len().div_ceil(2),
                    });
                }
                let padded = format!("{:0>width$}", text, width = 2 * $len);
                let bytes = hex::decode(&padded).map_err(|err| IdError::NotHex {
                    kind: $kind,
                    reason: err.to_string(),
                })?;
                Self::try_from(bytes.as_slice())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

id_type!(TraceId, 16, "trace_id");
id_type!(SpanId, 8, "span_id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_round_trips_through_hex() {
        let id: TraceId = "83A9EFD15C1C98A977E0711CC93EE28B".parse().unwrap();
        assert_eq!(id.to_string(), "83a9efd15c1c98a977e0711cc93ee28b");
        assert_eq!(TraceId::try_from(&id.as_bytes()[..]).unwrap(), id);
    }

    #[test]
    fn short_hex_is_left_padded() {
        let id: TraceId = "e0711cc93ee28b".parse().unwrap();
        assert_eq!(id.to_string(), "000000000000000000e0711cc93ee28b");
    }

    #[test]
    fn invalid_ids_are_rejected_with_a_reason() {
        assert_eq!(
            SpanId::try_from(&[1u8; 7][..]).unwrap_err().to_string(),
            "span_id must be 8 bytes, got 7"
        );
        assert_eq!(
            TraceId::try_from(&[0u8; 16][..]).unwrap_err().to_string(),
            "trace_id must not be all zeros"
        );
        assert!("xyz"
            .parse::<SpanId>()
            .unwrap_err()
            .to_string()
            .contains("not valid hex"));
        assert!("".parse::<SpanId>().is_err());
        assert!("0".repeat(33).parse::<TraceId>().is_err());
    }
}
