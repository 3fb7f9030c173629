//! Decoding of the protobuf request bodies kubectl sends for namespaces and secrets.
//!
//! kubectl's typed clients (`kubectl create namespace`, `kubectl create secret`) POST
//! `application/vnd.kubernetes.protobuf` bodies, and unlike for CBOR there is no fallback
//! to JSON on 415, so the fake has to read them. A body is the magic `k8s\0` followed by a
//! `runtime.Unknown` envelope whose `raw` field holds the `v1.Namespace` or `v1.Secret`.
//! This module decodes just those messages (the field numbers are those of
//! `k8s.io/api/core/v1/generated.proto` and `k8s.io/apimachinery/.../meta/v1`) into the
//! JSON form the rest of the fake works with. Fields the fake does not store or that the
//! server owns (timestamps, managedFields, conditions) are skipped. Responses are always
//! JSON, which every client that sends protobuf also accepts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::resource::ResourceKind;
use crate::status::ApiError;

const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone, Copy)]
enum FieldValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed 32- and 64-bit fields: none of the decoded messages use them.
    Fixed,
}

/// Iterates over the fields of one protobuf message.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn of(message: &'a [u8]) -> Self {
        Self { rest: message }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or("truncated varint")?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        if length > self.rest.len() {
            return Err("field longer than the message".into());
        }
        let (taken, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(taken)
    }

    fn next_field(&mut self) -> Result<Option<(u64, FieldValue<'a>)>, String> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => FieldValue::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                FieldValue::Fixed
            }
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| "length overflows")?;
                FieldValue::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                FieldValue::Fixed
            }
            wire_type => return Err(format!("unsupported wire type {wire_type}")),
        };
        Ok(Some((key >> 3, value)))
    }

    /// Calls `visit` with every field number and value, in order.
    fn for_each(
        mut self,
        mut visit: impl FnMut(u64, FieldValue<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        while let Some((number, value)) = self.next_field()? {
            visit(number, value)?;
        }
        Ok(())
    }
}

fn bytes(value: FieldValue<'_>) -> Result<&[u8], String> {
    match value {
        FieldValue::Bytes(bytes) => Ok(bytes),
        _ => Err("expected a length-delimited field".into()),
    }
}

fn string(value: FieldValue<'_>) -> Result<String, String> {
    String::from_utf8(bytes(value)?.to_vec()).map_err(|_| "a string field is not UTF-8".into())
}

fn boolean(value: FieldValue<'_>) -> Result<bool, String> {
    match value {
        FieldValue::Varint(number) => Ok(number != 0),
        _ => Err("expected a varint field".into()),
    }
}

/// A `map<string, V>` entry: key is field 1, value field 2.
fn map_entry(entry: &[u8]) -> Result<(String, &[u8]), String> {
    let (mut key, mut value) = (String::new(), &[][..]);
    Fields::of(entry).for_each(|number, field| {
        match number {
            1 => key = string(field)?,
            2 => value = bytes(field)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((key, value))
}

fn insert_string_map_entry(map: &mut Map<String, Value>, entry: &[u8]) -> Result<(), String> {
    let (key, value) = map_entry(entry)?;
    let value = String::from_utf8(value.to_vec()).map_err(|_| "a map value is not UTF-8")?;
    map.insert(key, Value::String(value));
    Ok(())
}

fn push_string(list: &mut Value, value: String) {
    if let Value::Array(items) = list {
        items.push(Value::String(value));
    }
}

/// Decodes a protobuf request body for `kind` into its JSON form.
pub(crate) fn decode_object(kind: ResourceKind, body: &[u8]) -> Result<Value, ApiError> {
    decode(kind, body).map_err(|why| {
        ApiError::bad_request(format!(
            "the protobuf body could not be decoded as a {}: {why}",
            kind.kind()
        ))
    })
}

fn decode(kind: ResourceKind, body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf magic prefix")?;
    let (mut api_version, mut type_kind, mut raw) = (String::new(), String::new(), &[][..]);
    // runtime.Unknown { typeMeta = 1 { apiVersion = 1, kind = 2 }, raw = 2, contentEncoding = 3, contentType = 4 }
    Fields::of(envelope).for_each(|number, field| {
        match number {
            1 => Fields::of(bytes(field)?).for_each(|number, field| {
                match number {
                    1 => api_version = string(field)?,
                    2 => type_kind = string(field)?,
                    _ => {}
                }
                Ok(())
            })?,
            2 => raw = bytes(field)?,
            3 if !bytes(field)?.is_empty() => {
                return Err("compressed bodies are not supported".into());
            }
            _ => {}
        }
        Ok(())
    })?;
    let mut object = match kind {
        ResourceKind::Namespace => decode_namespace(raw)?,
        ResourceKind::Secret => decode_secret(raw)?,
        // The HTTP layer answers 415 first; this only keeps a direct call from misdecoding.
        ResourceKind::VaultConfig => {
            return Err("custom resources have no protobuf encoding".into());
        }
    };
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(type_kind));
    Ok(Value::Object(object))
}

/// v1.Namespace { metadata = 1, spec = 2 { finalizers = 1 }, status = 3 { phase = 1 } }
fn decode_namespace(message: &[u8]) -> Result<Map<String, Value>, String> {
    let mut namespace = Map::new();
    Fields::of(message).for_each(|number, field| {
        match number {
            1 => {
                namespace.insert("metadata".into(), decode_object_meta(bytes(field)?)?);
            }
            2 => {
                let mut finalizers = json!([]);
                Fields::of(bytes(field)?).for_each(|number, field| {
                    if number == 1 {
                        push_string(&mut finalizers, string(field)?);
                    }
                    Ok(())
                })?;
                namespace.insert("spec".into(), json!({ "finalizers": finalizers }));
            }
            // The status is owned by the server and replaced on create anyway.
            _ => {}
        }
        Ok(())
    })?;
    Ok(namespace)
}

/// v1.Secret { metadata = 1, data = 2 (map<string, bytes>), type = 3,
/// stringData = 4 (map<string, string>), immutable = 5 }
fn decode_secret(message: &[u8]) -> Result<Map<String, Value>, String> {
    let mut secret = Map::new();
    let (mut data, mut string_data) = (Map::new(), Map::new());
    Fields::of(message).for_each(|number, field| {
        match number {
            1 => {
                secret.insert("metadata".into(), decode_object_meta(bytes(field)?)?);
            }
            2 => {
                let (key, value) = map_entry(bytes(field)?)?;
                data.insert(key, json!(BASE64.encode(value)));
            }
            3 => {
                secret.insert("type".into(), json!(string(field)?));
            }
            4 => insert_string_map_entry(&mut string_data, bytes(field)?)?,
            5 => {
                secret.insert("immutable".into(), json!(boolean(field)?));
            }
            _ => {}
        }
        Ok(())
    })?;
    if !data.is_empty() {
        secret.insert("data".into(), Value::Object(data));
    }
    if !string_data.is_empty() {
        secret.insert("stringData".into(), Value::Object(string_data));
    }
    Ok(secret)
}

/// meta/v1.ObjectMeta: name = 1, generateName = 2, namespace = 3, uid = 5,
/// resourceVersion = 6, labels = 11, annotations = 12, ownerReferences = 13,
/// finalizers = 14. Server-owned fields (timestamps, generation, managedFields) are skipped.
fn decode_object_meta(message: &[u8]) -> Result<Value, String> {
    let mut metadata = Map::new();
    let (mut labels, mut annotations) = (Map::new(), Map::new());
    let (mut owner_references, mut finalizers) = (Vec::new(), json!([]));
    Fields::of(message).for_each(|number, field| {
        let text_field = match number {
            1 => Some("name"),
            2 => Some("generateName"),
            3 => Some("namespace"),
            5 => Some("uid"),
            6 => Some("resourceVersion"),
            _ => None,
        };
        match (number, text_field) {
            (_, Some(name)) => {
                metadata.insert(name.into(), json!(string(field)?));
            }
            (11, None) => insert_string_map_entry(&mut labels, bytes(field)?)?,
            (12, None) => insert_string_map_entry(&mut annotations, bytes(field)?)?,
            (13, None) => owner_references.push(decode_owner_reference(bytes(field)?)?),
            (14, None) => push_string(&mut finalizers, string(field)?),
            _ => {}
        }
        Ok(())
    })?;
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    if !owner_references.is_empty() {
        metadata.insert("ownerReferences".into(), Value::Array(owner_references));
    }
    if finalizers.as_array().is_some_and(|items| !items.is_empty()) {
        metadata.insert("finalizers".into(), finalizers);
    }
    Ok(Value::Object(metadata))
}

/// meta/v1.OwnerReference: kind = 1, name = 3, uid = 4, apiVersion = 5, controller = 6,
/// blockOwnerDeletion = 7.
fn decode_owner_reference(message: &[u8]) -> Result<Value, String> {
    let mut reference = Map::new();
    Fields::of(message).for_each(|number, field| {
        let (name, value) = match number {
            1 => ("kind", json!(string(field)?)),
            3 => ("name", json!(string(field)?)),
            4 => ("uid", json!(string(field)?)),
            5 => ("apiVersion", json!(string(field)?)),
            6 => ("controller", json!(boolean(field)?)),
            7 => ("blockOwnerDeletion", json!(boolean(field)?)),
            _ => return Ok(()),
        };
        reference.insert(name.into(), value);
        Ok(())
    })?;
    Ok(Value::Object(reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal protobuf encoder, enough to build test messages.
    fn field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut encoded = varint(number << 3 | 2);
        encoded.extend(varint(payload.len() as u64));
        encoded.extend_from_slice(payload);
        encoded
    }

    fn varint(mut value: u64) -> Vec<u8> {
        let mut encoded = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                encoded.push(byte);
                return encoded;
            }
            encoded.push(byte | 0x80);
        }
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        [field(1, key.as_bytes()), field(2, value)].concat()
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, b"v1"), field(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            field(1, &type_meta),
            field(2, raw),
            field(3, b""),
            field(4, b""),
        ]
        .concat()
    }

    #[test]
    fn decodes_a_secret_like_kubectl_create_secret_sends_it() {
        let metadata = [
            field(1, b"db"),
            field(3, b"team-a"),
            field(8, b""), // an empty creationTimestamp, as Go always encodes it
            field(11, &entry("app", b"web")),
        ]
        .concat();
        let secret = [
            field(1, &metadata),
            field(2, &entry("password", b"\x00\xffbinary")),
            field(3, b"Opaque"),
            field(4, &entry("user", b"admin")),
            varint(5 << 3), // immutable, varint
            varint(1),
        ]
        .concat();
        let decoded = decode_object(ResourceKind::Secret, &envelope("Secret", &secret)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": "db", "namespace": "team-a", "labels": { "app": "web" } },
                "data": { "password": BASE64.encode(b"\x00\xffbinary") },
                "stringData": { "user": "admin" },
                "type": "Opaque",
                "immutable": true,
            })
        );
    }

    #[test]
    fn decodes_a_namespace() {
        let namespace = [
            field(1, &field(1, b"team-a")),
            field(2, &field(1, b"kubernetes")),
        ]
        .concat();
        let decoded =
            decode_object(ResourceKind::Namespace, &envelope("Namespace", &namespace)).unwrap();
        assert_eq!(decoded["metadata"], json!({ "name": "team-a" }));
        assert_eq!(decoded["spec"], json!({ "finalizers": ["kubernetes"] }));
    }

    #[test]
    fn malformed_bodies_are_bad_requests_not_panics() {
        let mut truncated = envelope("Secret", &field(1, &field(1, b"db")));
        truncated.truncate(truncated.len() - 3);
        for body in [
            &b""[..],
            b"k8s",
            b"not protobuf",
            &truncated,
            b"k8s\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            let error = decode_object(ResourceKind::Secret, body).unwrap_err();
            assert_eq!(error.code, 400, "{body:?}");
        }
    }
}
