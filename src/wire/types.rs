//! wire::types: MySQL column types (with MySQL's names) and how long a value of each type is
//! in the binary protocol — shared by binary result rows and COM_STMT_EXECUTE parameters.

use super::packets::lenenc_int;

pub const MYSQL_TYPE_TINY: u8 = 0x01;
pub const MYSQL_TYPE_SHORT: u8 = 0x02;
pub const MYSQL_TYPE_LONG: u8 = 0x03;
pub const MYSQL_TYPE_FLOAT: u8 = 0x04;
pub const MYSQL_TYPE_DOUBLE: u8 = 0x05;
pub const MYSQL_TYPE_NULL: u8 = 0x06;
pub const MYSQL_TYPE_TIMESTAMP: u8 = 0x07;
pub const MYSQL_TYPE_LONGLONG: u8 = 0x08;
pub const MYSQL_TYPE_INT24: u8 = 0x09;
pub const MYSQL_TYPE_DATE: u8 = 0x0A;
pub const MYSQL_TYPE_TIME: u8 = 0x0B;
pub const MYSQL_TYPE_DATETIME: u8 = 0x0C;
pub const MYSQL_TYPE_YEAR: u8 = 0x0D;
pub const MYSQL_TYPE_NEWDECIMAL: u8 = 0xF6;
pub const MYSQL_TYPE_BLOB: u8 = 0xFC;
pub const MYSQL_TYPE_VAR_STRING: u8 = 0xFD;
pub const MYSQL_TYPE_STRING: u8 = 0xFE;

/// Where a binary-protocol value of type `ty` that starts at `at` ends, if it fits in `buf`.
pub fn binary_value_end(buf: &[u8], at: usize, ty: u8) -> Option<usize> {
    let fixed = match ty {
        MYSQL_TYPE_TINY => 1,
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => 2,
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 | MYSQL_TYPE_FLOAT => 4,
        MYSQL_TYPE_LONGLONG | MYSQL_TYPE_DOUBLE => 8,
        MYSQL_TYPE_NULL => 0,
        // Temporal values carry their own length byte.
        MYSQL_TYPE_DATE | MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIME => {
            return at
                .checked_add(1 + usize::from(*buf.get(at)?))
                .filter(|&e| e <= buf.len());
        }
        // Strings, decimals, blobs, JSON, enums, sets, bits, geometry: length-encoded.
        _ => {
            let (len, n) = lenenc_int(buf.get(at..)?)?;
            return at
                .checked_add(n)?
                .checked_add(usize::try_from(len).ok()?)
                .filter(|&e| e <= buf.len());
        }
    };
    at.checked_add(fixed).filter(|&e| e <= buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_ends_by_type_and_never_past_the_buffer() {
        let buf = [3, b'a', b'b', b'c', 4, 0xE8, 0x07, 1, 2];
        assert_eq!(binary_value_end(&buf, 0, MYSQL_TYPE_VAR_STRING), Some(4));
        assert_eq!(binary_value_end(&buf, 4, MYSQL_TYPE_DATE), Some(9));
        assert_eq!(binary_value_end(&buf, 5, MYSQL_TYPE_LONG), Some(9));
        assert_eq!(binary_value_end(&buf, 6, MYSQL_TYPE_LONGLONG), None);
        assert_eq!(
            binary_value_end(&buf, 5, MYSQL_TYPE_DATE),
            None,
            "length byte 0xE8 runs past the end"
        );
        assert_eq!(binary_value_end(&[0xFC, 0xFF], 0, MYSQL_TYPE_BLOB), None);
    }
}
