//! Field kinds and the `wire_struct!` macro: a fixed layout is written once, as a list of typed
//! fields in wire order, and gets its decoder, encoder and length from that list.

use bytes::{BufMut, BytesMut};

use super::codec::{put_fixed, DecodeResult, Reader};
use super::Profile;

/// How one field is read and written. The kind is a marker type; its `Value` is what the
/// struct holds.
pub trait FieldKind {
    type Value;
    fn get(r: &mut Reader<'_>, p: Profile) -> DecodeResult<Self::Value>;
    fn put(v: &Self::Value, buf: &mut BytesMut, p: Profile);
    fn len(p: Profile) -> usize;
}

#[derive(Debug)]
pub struct U8;
/// A storage status byte.
#[derive(Debug)]
pub struct StatusByte;
#[derive(Debug)]
pub struct I32;
#[derive(Debug)]
pub struct I64;
/// Fixed-width zero-padded text of `N` bytes.
#[derive(Debug)]
pub struct Text<const N: usize>;
/// `IP_ADDRESS_SIZE`-wide text (16 or 46 by layout).
#[derive(Debug)]
pub struct Ip;
/// Client-facing IP text in tracker query answers (`response_ip_size − 1`).
#[derive(Debug)]
pub struct QueryIp;
/// Client-facing IP text in file info answers (`response_ip_size`).
#[derive(Debug)]
pub struct FullRespIp;

impl FieldKind for StatusByte {
    type Value = super::StorageStatus;
    fn get(r: &mut Reader<'_>, _: Profile) -> DecodeResult<super::StorageStatus> {
        r.u8().map(super::StorageStatus::from_byte)
    }
    fn put(v: &super::StorageStatus, buf: &mut BytesMut, _: Profile) {
        buf.put_u8(v.byte())
    }
    fn len(_: Profile) -> usize {
        1
    }
}

impl FieldKind for U8 {
    type Value = u8;
    fn get(r: &mut Reader<'_>, _: Profile) -> DecodeResult<u8> {
        r.u8()
    }
    fn put(v: &u8, buf: &mut BytesMut, _: Profile) {
        buf.put_u8(*v)
    }
    fn len(_: Profile) -> usize {
        1
    }
}

impl FieldKind for I32 {
    type Value = i32;
    fn get(r: &mut Reader<'_>, _: Profile) -> DecodeResult<i32> {
        r.i32()
    }
    fn put(v: &i32, buf: &mut BytesMut, _: Profile) {
        buf.put_i32(*v)
    }
    fn len(_: Profile) -> usize {
        4
    }
}

impl FieldKind for I64 {
    type Value = i64;
    fn get(r: &mut Reader<'_>, _: Profile) -> DecodeResult<i64> {
        r.i64()
    }
    fn put(v: &i64, buf: &mut BytesMut, _: Profile) {
        buf.put_i64(*v)
    }
    fn len(_: Profile) -> usize {
        8
    }
}

impl<const N: usize> FieldKind for Text<N> {
    type Value = String;
    fn get(r: &mut Reader<'_>, _: Profile) -> DecodeResult<String> {
        r.fixed_str(N)
    }
    fn put(v: &String, buf: &mut BytesMut, _: Profile) {
        put_fixed(buf, v, N)
    }
    fn len(_: Profile) -> usize {
        N
    }
}

macro_rules! width_text {
    ($kind:ty, $width:expr) => {
        impl FieldKind for $kind {
            type Value = String;
            fn get(r: &mut Reader<'_>, p: Profile) -> DecodeResult<String> {
                r.fixed_str($width(p))
            }
            fn put(v: &String, buf: &mut BytesMut, p: Profile) {
                put_fixed(buf, v, $width(p))
            }
            fn len(p: Profile) -> usize {
                $width(p)
            }
        }
    };
}

width_text!(Ip, Profile::ip_addr_size);
width_text!(QueryIp, Profile::query_ip_width);
width_text!(FullRespIp, |p: Profile| p.response_ip_size);

/// Declares a struct whose fields are laid out on the wire in declaration order.
///
/// Generates `decode(body, profile)` (exact length, trailing bytes rejected), `read` (from a
/// reader, for records inside a larger body), `encode`/`put` and `wire_len(profile)`.
macro_rules! wire_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident : $kind:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: <$kind as $crate::protocol::wire::FieldKind>::Value,)*
        }

        impl $name {
            pub fn wire_len(p: $crate::protocol::Profile) -> usize {
                0 $(+ <$kind as $crate::protocol::wire::FieldKind>::len(p))*
            }

            pub fn read(
                r: &mut $crate::protocol::codec::Reader<'_>,
                p: $crate::protocol::Profile,
            ) -> $crate::protocol::codec::DecodeResult<Self> {
                let _ = (&r, p);
                Ok(Self { $($field: <$kind as $crate::protocol::wire::FieldKind>::get(r, p)?,)* })
            }

            pub fn decode(
                body: &[u8],
                p: $crate::protocol::Profile,
            ) -> $crate::protocol::codec::DecodeResult<Self> {
                $crate::protocol::codec::expect_len(body, Self::wire_len(p))?;
                let mut r = $crate::protocol::codec::Reader::new(body);
                let v = Self::read(&mut r, p)?;
                r.finish()?;
                Ok(v)
            }

            pub fn put(&self, buf: &mut bytes::BytesMut, p: $crate::protocol::Profile) {
                let _ = (&buf, p);
                $(<$kind as $crate::protocol::wire::FieldKind>::put(&self.$field, buf, p);)*
            }

            pub fn encode(&self, p: $crate::protocol::Profile) -> bytes::BytesMut {
                let mut buf = bytes::BytesMut::with_capacity(Self::wire_len(p));
                self.put(&mut buf, p);
                buf
            }
        }
    };
}

pub(crate) use wire_struct;
