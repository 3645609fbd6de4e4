//! WeChat's codecs, with no domain type above them: the SHA-1 signatures ([`signature`]), the
//! EncodingAESKey and AES-CBC scheme ([`crypto`]), the XML parser ([`xml`]) and WeChat's JSON
//! format ([`json_body`]).

pub mod crypto;
pub mod json_body;
pub mod signature;
pub mod xml;
