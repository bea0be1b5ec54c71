//! Secrets sealed at rest: a connection's webhook (which holds the robot's key) and signing
//! secret are stored encrypted with XChaCha20-Poly1305, bound to the connection and field they
//! belong to, under a key from `MAGPIE_SECRET_KEY` or the data directory's `secret.key` (32
//! random bytes, base64, created mode 0600 on first start).
//!
//! A sealed value reads `sealed:v1:<key id>:<base64 nonce+ciphertext>`; the key id (the first
//! bytes of the key's SHA-256) says which key opens it, so a rotation ([`rotate`]) that stopped
//! half way is finished or undone at the next start. Values stored in clear by an older Magpie
//! are read as they are and sealed at start. `${ENV}` references are sealed like any text and
//! stay references.
//!
//! It knows keys and the two fields of a stored connection, nothing else of the configuration.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::Value;
use sha2::{Digest, Sha256};

const PREFIX: &str = "sealed:v1:";
/// The key file in the data directory.
pub const KEY_FILE: &str = "secret.key";
/// Where a rotation writes the new key before the database is changed.
const NEW_KEY_FILE: &str = "secret.key.new";
/// The fields of a stored connection that are sealed.
const FIELDS: [&str; 2] = ["webhook", "secret"];

/// Why secrets cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key given is not 32 bytes of base64.
    #[error("{0}: expected 32 random bytes in base64 (e.g. `openssl rand -base64 32`)")]
    BadKey(String),
    /// The key file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// No key in hand opens a stored value.
    #[error("{0}")]
    Unseal(String),
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn from_bytes(bytes: &[u8], what: &str) -> Result<Key, SecretError> {
        if bytes.len() != 32 {
            return Err(SecretError::BadKey(what.into()));
        }
        let id: String = Sha256::digest(bytes).iter().take(4).map(|b| format!("{b:02x}")).collect();
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| SecretError::BadKey(what.into()))?;
        Ok(Key { id, cipher })
    }

    fn from_text(text: &str, what: &str) -> Result<Key, SecretError> {
        let t = text.trim();
        let bytes = B64
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
            .map_err(|_| SecretError::BadKey(what.into()))?;
        Key::from_bytes(&bytes, what)
    }

    fn random() -> Result<(Key, String), SecretError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| SecretError::Io(format!("the system's random source: {e}")))?;
        Ok((Key::from_bytes(&bytes, "a new key")?, B64.encode(bytes)))
    }
}

/// The keys in hand: the first seals, every one opens what it sealed.
pub struct Sealer {
    keys: Vec<Key>,
}

impl Sealer {
    /// The key of `MAGPIE_SECRET_KEY` (`env_key`), else the data directory's key file, created
    /// (0600) when absent. A key file a rotation left behind is held too, to open what it sealed.
    pub fn open(data_dir: &Path, env_key: Option<&str>) -> Result<Sealer, SecretError> {
        let mut keys = Vec::new();
        if let Some(text) = env_key {
            keys.push(Key::from_text(text, "MAGPIE_SECRET_KEY")?);
        } else {
            let path = data_dir.join(KEY_FILE);
            match std::fs::read_to_string(&path) {
                Ok(text) => keys.push(Key::from_text(&text, &path.display().to_string())?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let (key, text) = Key::random()?;
                    write_private(&path, &text)?;
                    tracing::info!(path = %path.display(), "created the key that seals secrets at rest: back it up with the database");
                    keys.push(key);
                }
                Err(e) => return Err(SecretError::Io(format!("reading {}: {e}", path.display()))),
            }
            if let Ok(text) = std::fs::read_to_string(data_dir.join(NEW_KEY_FILE)) {
                keys.push(Key::from_text(&text, NEW_KEY_FILE)?);
            }
        }
        Ok(Sealer { keys })
    }

    /// A sealer of one key given as text (tests, rotation).
    pub fn of_key(text: &str) -> Result<Sealer, SecretError> {
        Ok(Sealer { keys: vec![Key::from_text(text, "the key")?] })
    }

    /// Seals `clear` for `aad` (where it belongs) under the first key.
    pub fn seal(&self, aad: &str, clear: &str) -> Result<String, SecretError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Io(format!("the system's random source: {e}")))?;
        let sealed = key
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: clear.as_bytes(), aad: aad.as_bytes() })
            .map_err(|_| SecretError::Io("sealing failed".into()))?;
        let mut blob = nonce.to_vec();
        blob.extend(sealed);
        Ok(format!("{PREFIX}{}:{}", key.id, B64.encode(blob)))
    }

    /// Opens a sealed value; a value that is not sealed is returned as it is.
    pub fn unseal(&self, aad: &str, text: &str) -> Result<String, SecretError> {
        let Some(rest) = text.strip_prefix(PREFIX) else { return Ok(text.to_string()) };
        let (id, blob) =
            rest.split_once(':').ok_or_else(|| SecretError::Unseal(format!("{aad}: malformed sealed value")))?;
        let key = self.keys.iter().find(|k| k.id == id).ok_or_else(|| {
            SecretError::Unseal(format!(
                "{aad} is sealed under key {id}, which is not the key in use ({}): start with the key it was sealed with (MAGPIE_SECRET_KEY or {KEY_FILE})",
                self.keys[0].id
            ))
        })?;
        let blob = B64.decode(blob).map_err(|_| SecretError::Unseal(format!("{aad}: malformed sealed value")))?;
        if blob.len() < 24 {
            return Err(SecretError::Unseal(format!("{aad}: malformed sealed value")));
        }
        let (nonce, sealed) = blob.split_at(24);
        let clear = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: aad.as_bytes() })
            .map_err(|_| {
                SecretError::Unseal(format!(
                    "{aad}: the sealed value does not open (altered, or moved from another connection)"
                ))
            })?;
        String::from_utf8(clear).map_err(|_| SecretError::Unseal(format!("{aad}: not text")))
    }

    /// Seals the secret fields of a stored connection named `name`.
    pub fn seal_connection(&self, name: &str, body: &mut Value) -> Result<(), SecretError> {
        for f in FIELDS {
            if let Some(Value::String(s)) = body.get(f)
                && !s.starts_with(PREFIX)
            {
                body[f] = Value::String(self.seal(&aad(name, f), s)?);
            }
        }
        Ok(())
    }

    /// Opens the secret fields of a stored connection named `name`.
    pub fn unseal_connection(&self, name: &str, body: &mut Value) -> Result<(), SecretError> {
        for f in FIELDS {
            if let Some(Value::String(s)) = body.get(f) {
                body[f] = Value::String(self.unseal(&aad(name, f), s)?);
            }
        }
        Ok(())
    }

    /// Whether a stored connection has a field in clear (stored by an older Magpie).
    pub fn has_clear(body: &Value) -> bool {
        FIELDS.iter().any(|f| body.get(*f).and_then(Value::as_str).is_some_and(|s| !s.starts_with(PREFIX)))
    }

    /// Whether a stored connection has a field sealed under the first key.
    fn sealed_by_first(&self, body: &Value) -> bool {
        let mark = format!("{PREFIX}{}:", self.keys[0].id);
        FIELDS.iter().any(|f| body.get(*f).and_then(Value::as_str).is_some_and(|s| s.starts_with(&mark)))
    }
}

fn aad(name: &str, field: &str) -> String {
    format!("connection/{name}/{field}")
}

/// Writes a file only its owner can read, atomically (a temporary file renamed into place).
fn write_private(path: &Path, text: &str) -> Result<(), SecretError> {
    let io = |e: std::io::Error| SecretError::Io(format!("writing {}: {e}", path.display()));
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).and_then(|_| f.write_all(b"\n")).and_then(|_| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// A rotation: the new key, and where (if anywhere) it goes once the database holds only values
/// sealed under it.
pub struct Rotation {
    /// Seals under the new key; opens under the old ones too.
    pub sealer: Sealer,
    /// The new key file to move over `secret.key` after the database is changed (none when
    /// the key comes from the environment).
    pending: Option<PathBuf>,
}

/// Starts a rotation: a new key (from `MAGPIE_NEW_SECRET_KEY` when the key comes from the
/// environment; else random, written to `secret.key.new` before anything is re-sealed).
pub fn rotate(data_dir: &Path, env_key: Option<&str>, new_env_key: Option<&str>) -> Result<Rotation, SecretError> {
    let old = Sealer::open(data_dir, env_key)?;
    let (new, pending) = match (env_key, new_env_key) {
        (Some(_), Some(n)) => (Key::from_text(n, "MAGPIE_NEW_SECRET_KEY")?, None),
        (Some(_), None) => {
            return Err(SecretError::BadKey(
                "the key comes from MAGPIE_SECRET_KEY: set MAGPIE_NEW_SECRET_KEY to the new key too".into(),
            ));
        }
        (None, _) => {
            let (key, text) = Key::random()?;
            let path = data_dir.join(NEW_KEY_FILE);
            write_private(&path, &text)?;
            (key, Some(path))
        }
    };
    let new_id = new.id.clone();
    let mut keys = vec![new];
    keys.extend(old.keys.into_iter().filter(|k| k.id != new_id));
    Ok(Rotation { sealer: Sealer { keys }, pending })
}

impl Rotation {
    /// After the database is changed: the new key file becomes `secret.key`.
    pub fn finish(self, data_dir: &Path) -> Result<(), SecretError> {
        if let Some(p) = self.pending {
            std::fs::rename(&p, data_dir.join(KEY_FILE))
                .map_err(|e| SecretError::Io(format!("moving {} into place: {e}", p.display())))?;
        }
        Ok(())
    }
}

/// At start: a rotation that wrote its new key but stopped before or after changing the
/// database is finished (the database uses the new key) or undone (it does not).
pub fn settle_rotation(data_dir: &Path, stored: &[Value]) -> Result<(), SecretError> {
    let new_path = data_dir.join(NEW_KEY_FILE);
    let Ok(text) = std::fs::read_to_string(&new_path) else { return Ok(()) };
    let new = Sealer { keys: vec![Key::from_text(&text, NEW_KEY_FILE)?] };
    let io = |e: std::io::Error| SecretError::Io(format!("{}: {e}", new_path.display()));
    if stored.iter().any(|b| new.sealed_by_first(b)) {
        tracing::warn!("finishing a rotation of the secrets key that stopped half way");
        std::fs::rename(&new_path, data_dir.join(KEY_FILE)).map_err(io)
    } else {
        std::fs::remove_file(&new_path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sealed_values_open_only_where_they_belong_and_under_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sealer::open(dir.path(), None).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut body = json!({"name": "c", "webhook": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-123", "secret": "SECabc"});
        s.seal_connection("c", &mut body).unwrap();
        let text = body.to_string();
        assert!(!text.contains("k-123") && !text.contains("SECabc"), "{text}");
        assert!(!Sealer::has_clear(&body));
        // Moved to another connection: refused.
        assert!(s.unseal_connection("d", &mut body.clone()).is_err());
        let mut open = body.clone();
        s.unseal_connection("c", &mut open).unwrap();
        assert_eq!(open["secret"], "SECabc");
        // The same key file opens it again; another key does not.
        assert!(Sealer::open(dir.path(), None).unwrap().unseal_connection("c", &mut body.clone()).is_ok());
        let other = Sealer::of_key(&B64.encode([7u8; 32])).unwrap();
        let e = other.unseal_connection("c", &mut body.clone()).unwrap_err().to_string();
        assert!(e.contains("not the key in use"), "{e}");
        // Clear values (an older Magpie's) read as they are.
        let mut clear = json!({"webhook": "https://x/"});
        assert!(Sealer::has_clear(&clear));
        s.unseal_connection("c", &mut clear).unwrap();
        assert_eq!(clear["webhook"], "https://x/");
    }

    #[test]
    fn a_rotation_reseals_and_a_half_done_one_is_settled() {
        let dir = tempfile::tempdir().unwrap();
        let old = Sealer::open(dir.path(), None).unwrap();
        let mut body = json!({"webhook": "https://h/?key=abc"});
        old.seal_connection("c", &mut body).unwrap();
        let rot = rotate(dir.path(), None, None).unwrap();
        // Started, database unchanged: the next start undoes it.
        settle_rotation(dir.path(), std::slice::from_ref(&body)).unwrap();
        assert!(!dir.path().join(NEW_KEY_FILE).exists());
        drop(rot);
        let rot = rotate(dir.path(), None, None).unwrap();
        let mut clear = body.clone();
        rot.sealer.unseal_connection("c", &mut clear).unwrap();
        let mut resealed = clear.clone();
        rot.sealer.seal_connection("c", &mut resealed).unwrap();
        assert_ne!(resealed["webhook"], body["webhook"]);
        // Database changed, key not yet moved: the next start finishes it.
        settle_rotation(dir.path(), std::slice::from_ref(&resealed)).unwrap();
        let now = Sealer::open(dir.path(), None).unwrap();
        let mut again = resealed.clone();
        now.unseal_connection("c", &mut again).unwrap();
        assert_eq!(again["webhook"], "https://h/?key=abc");
        assert!(now.unseal_connection("c", &mut body.clone()).is_err(), "the old key is gone");
    }

    #[test]
    fn bad_keys_are_refused_with_where_they_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let e = Sealer::open(dir.path(), Some("short")).err().unwrap().to_string();
        assert!(e.starts_with("MAGPIE_SECRET_KEY"), "{e}");
        assert!(rotate(dir.path(), Some(&B64.encode([1u8; 32])), None).is_err());
    }
}
