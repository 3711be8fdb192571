//! API keys: who may call the server, as the operator or as one prosumer.
//!
//! A [`KeyRing`] creates keys ([`KeyRing::create`] returns the secret
//! once), lists them (never with their secrets or hashes), revokes them
//! and verifies a presented secret. A secret is stored only as an argon2id
//! hash (a PHC string); it has no `Debug` or `Display` that shows it.
//!
//! Verifying an argon2 hash takes tens of milliseconds on purpose, too slow
//! for every request: once a secret has been verified, the SHA-256 of it
//! is kept in memory with the key's id, and later requests with the same
//! secret are checked against that. Revoking a key drops its entries.
//!
//! Keys live in a JSON file ([`KeyRing::open`]; written atomically, to a
//! temporary file renamed over it) or in memory only
//! ([`KeyRing::in_memory`]), not in the microgrid's store: a server on a
//! shared database keeps its own keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use chrono::{DateTime, SubsecRound, Utc};
use microgrid_core::ProsumerId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, ServerError};

/// What a key may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Operator,
    /// Read the prosumer's own info, bills, trades and invoices.
    Prosumer(ProsumerId),
}

impl Role {
    /// `"operator"` or `"prosumer"`.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Prosumer(_) => "prosumer",
        }
    }

    /// The prosumer of a prosumer key.
    pub fn prosumer(&self) -> Option<&ProsumerId> {
        match self {
            Role::Operator => None,
            Role::Prosumer(id) => Some(id),
        }
    }
}

/// A key as listed: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's id (16 hex characters; also the start of its secret).
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// When it was created.
    pub created: DateTime<Utc>,
}

/// A key's secret, as handed out once by [`KeyRing::create`]. It shows as
/// `Secret(***)` in `Debug` output and has no `Display`: read it with
/// [`Secret::expose`] where it is meant to be shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, `mgk_<id>_<43 base64url characters>`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A key as stored in the file.
#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    id: String,
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prosumer: Option<String>,
    created: DateTime<Utc>,
    /// The argon2id hash of the secret, a PHC string.
    hash: String,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("prosumer", &self.prosumer)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl StoredKey {
    fn info(&self) -> Option<KeyInfo> {
        let role = match (self.role.as_str(), &self.prosumer) {
            ("operator", _) => Role::Operator,
            ("prosumer", Some(p)) => Role::Prosumer(ProsumerId::new(p.as_str()).ok()?),
            _ => return None,
        };
        Some(KeyInfo {
            id: self.id.clone(),
            role,
            created: self.created,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

#[derive(Debug, Default)]
struct Inner {
    keys: Vec<StoredKey>,
    /// SHA-256 of a verified secret → key id.
    verified: HashMap<[u8; 32], String>,
}

/// The keys of a server; clones share the same keys.
#[derive(Debug, Clone)]
pub struct KeyRing {
    inner: Arc<RwLock<Inner>>,
    path: Option<Arc<PathBuf>>,
    /// Writes to the file take turns.
    writing: Arc<Mutex<()>>,
}

impl KeyRing {
    /// An empty key ring kept in memory only (lost when the process ends).
    pub fn in_memory() -> KeyRing {
        KeyRing {
            inner: Arc::default(),
            path: None,
            writing: Arc::default(),
        }
    }

    /// The key ring of the JSON file `path`: loaded if it exists, created
    /// on the first change otherwise; every change rewrites it atomically.
    pub fn open(path: impl AsRef<Path>) -> Result<KeyRing> {
        let path = path.as_ref().to_path_buf();
        let err = |reason: String| ServerError::KeyStore {
            path: path.display().to_string(),
            reason,
        };
        let keys = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: KeyFile =
                    serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
                if let Some(bad) = file.keys.iter().find(|k| k.info().is_none()) {
                    return Err(err(format!("key {} has no valid role", bad.id)));
                }
                file.keys
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(KeyRing {
            inner: Arc::new(RwLock::new(Inner {
                keys,
                verified: HashMap::new(),
            })),
            path: Some(Arc::new(path)),
            writing: Arc::default(),
        })
    }

    /// The file the keys are kept in, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref().map(PathBuf::as_path)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a key for `role` and returns it with its secret, which is
    /// not kept (only its hash is): show it to its holder once.
    pub fn create(&self, role: Role) -> Result<(KeyInfo, Secret)> {
        let mut id_bytes = [0u8; 8];
        OsRng.fill_bytes(&mut id_bytes);
        let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut secret_bytes = [0u8; 32];
        OsRng.fill_bytes(&mut secret_bytes);
        let secret = format!(
            "mgk_{id}_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes)
        );
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .map_err(|e| ServerError::Internal(format!("hashing a key: {e}")))?
            .to_string();
        let stored = StoredKey {
            id: id.clone(),
            role: role.name().to_owned(),
            prosumer: role.prosumer().map(|p| p.as_str().to_owned()),
            created: Utc::now().trunc_subsecs(0),
            hash,
        };
        let info = KeyInfo {
            id,
            role,
            created: stored.created,
        };
        let _turn = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let keys = {
            let mut inner = self.write();
            inner.keys.push(stored);
            inner.keys.clone()
        };
        self.save(keys)?;
        Ok((info, Secret(secret)))
    }

    /// Revokes key `id`: it no longer verifies. `false` if there is no such
    /// key.
    pub fn revoke(&self, id: &str) -> Result<bool> {
        let _turn = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let keys = {
            let mut inner = self.write();
            let before = inner.keys.len();
            inner.keys.retain(|k| k.id != id);
            if inner.keys.len() == before {
                return Ok(false);
            }
            inner.verified.retain(|_, key| key != id);
            inner.keys.clone()
        };
        self.save(keys)?;
        Ok(true)
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.read()
            .keys
            .iter()
            .filter_map(StoredKey::info)
            .collect()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.read().keys.is_empty()
    }

    /// Whether there is an operator key.
    pub fn has_operator(&self) -> bool {
        self.list().iter().any(|k| k.role == Role::Operator)
    }

    /// The key whose secret is `secret`, if it is valid. Slow (argon2) the
    /// first time a secret is presented, fast afterwards (see the module
    /// docs); call it off the async runtime's threads.
    pub fn verify(&self, secret: &str) -> Option<KeyInfo> {
        if let Some(known) = self.verified(secret) {
            return Some(known);
        }
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let id = secret.strip_prefix("mgk_")?.split('_').next()?;
        let stored = self.read().keys.iter().find(|k| k.id == id).cloned()?;
        let hash = PasswordHash::new(&stored.hash).ok()?;
        Argon2::default()
            .verify_password(secret.as_bytes(), &hash)
            .ok()?;
        let mut inner = self.write();
        // Revoked meanwhile?
        let info = inner
            .keys
            .iter()
            .find(|k| k.id == stored.id)
            .and_then(StoredKey::info)?;
        inner.verified.insert(digest, stored.id);
        Some(info)
    }

    /// The key of `secret` if it was verified before (and not revoked
    /// since): fast, no argon2. `None` says nothing about the secret:
    /// [`KeyRing::verify`] it.
    pub fn verified(&self, secret: &str) -> Option<KeyInfo> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let inner = self.read();
        let id = inner.verified.get(&digest)?;
        inner
            .keys
            .iter()
            .find(|k| &k.id == id)
            .and_then(StoredKey::info)
    }

    /// Writes `keys` to the file, if there is one: to a temporary file in
    /// the same directory, synced, then renamed over the file.
    fn save(&self, keys: Vec<StoredKey>) -> Result<()> {
        let Some(path) = self.path.as_deref() else {
            return Ok(());
        };
        let err = |reason: String| ServerError::KeyStore {
            path: path.display().to_string(),
            reason,
        };
        let bytes = serde_json::to_vec_pretty(&KeyFile { keys }).map_err(|e| err(e.to_string()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "keys.json".to_owned());
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_revoke_in_memory() {
        let ring = KeyRing::in_memory();
        let (info, secret) = ring.create(Role::Operator).unwrap();
        assert!(!format!("{secret:?} {info:?}").contains(secret.expose()));
        assert_eq!(ring.verify(secret.expose()), Some(info.clone()));
        // Cached now; still the same answer.
        assert_eq!(ring.verified(secret.expose()), Some(info.clone()));
        assert_eq!(ring.verify(secret.expose()), Some(info.clone()));
        assert_eq!(ring.verify("mgk_0000_nope"), None);
        assert_eq!(ring.verify(&format!("{}x", secret.expose())), None);
        assert!(ring.revoke(&info.id).unwrap());
        assert_eq!(ring.verify(secret.expose()), None);
        assert_eq!(ring.verified(secret.expose()), None);
        assert!(!ring.revoke(&info.id).unwrap());
    }

    #[test]
    fn file_keeps_hashes_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let ring = KeyRing::open(&path).unwrap();
        let p: ProsumerId = "house-1".parse().unwrap();
        let (info, secret) = ring.create(Role::Prosumer(p.clone())).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(secret.expose()));
        assert!(text.contains("$argon2id$"));
        let again = KeyRing::open(&path).unwrap();
        assert_eq!(again.list(), vec![info.clone()]);
        assert_eq!(
            again.verify(secret.expose()).map(|k| k.role),
            Some(Role::Prosumer(p))
        );
        again.revoke(&info.id).unwrap();
        assert!(KeyRing::open(&path).unwrap().is_empty());
    }
}
