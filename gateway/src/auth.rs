//! Basic auth for `/system/*`: credentials from `secret_mount_path`, generated on first start,
//! compared in constant time (spec §5).

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use http::HeaderValue;
use subtle::ConstantTimeEq;

pub const USER_FILE: &str = "basic-auth-user";
pub const PASSWORD_FILE: &str = "basic-auth-password";

pub struct Credentials {
    user: Vec<u8>,
    password: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0} exists but {1} does not: provide both or neither")]
    HalfPresent(PathBuf, PathBuf),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write credentials in {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

impl Credentials {
    /// Reads both files (whitespace trimmed); when both are absent, generates `admin` and a
    /// random password and writes them (0600). Returns whether they were generated.
    pub fn load_or_generate(dir: &Path) -> Result<(Credentials, bool), AuthError> {
        let (user_path, pass_path) = (dir.join(USER_FILE), dir.join(PASSWORD_FILE));
        match (user_path.exists(), pass_path.exists()) {
            (true, true) => {
                let read = |p: &Path| std::fs::read(p).map_err(|e| AuthError::Read(p.to_path_buf(), e));
                let trim = |b: Vec<u8>| String::from_utf8_lossy(&b).trim().as_bytes().to_vec();
                Ok((Credentials { user: trim(read(&user_path)?), password: trim(read(&pass_path)?) }, false))
            }
            (true, false) => Err(AuthError::HalfPresent(user_path, pass_path)),
            (false, true) => Err(AuthError::HalfPresent(pass_path, user_path)),
            (false, false) => {
                let password = random_password().map_err(|e| AuthError::Write(dir.to_path_buf(), e))?;
                let write = || -> std::io::Result<()> {
                    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
                    for (path, value) in [(&user_path, "admin"), (&pass_path, password.as_str())] {
                        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                        f.write_all(value.as_bytes())?;
                    }
                    Ok(())
                };
                write().map_err(|e| AuthError::Write(dir.to_path_buf(), e))?;
                Ok((Credentials { user: b"admin".to_vec(), password: password.into_bytes() }, true))
            }
        }
    }

    /// `Authorization: Basic …` with these credentials, for calls to an external provider.
    pub fn header(&self) -> HeaderValue {
        let mut raw = self.user.clone();
        raw.push(b':');
        raw.extend_from_slice(&self.password);
        let v = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw));
        let mut h = HeaderValue::from_str(&v).expect("base64 is a valid header value");
        h.set_sensitive(true);
        h
    }

    /// Whether `Authorization: Basic …` carries these credentials; user and password are both
    /// compared in constant time.
    pub fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some(encoded) = header.and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else { return false };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        (user.ct_eq(&self.user) & password.ct_eq(&self.password)).into()
    }
}

/// 192 random bits from the kernel, URL-safe base64 (32 characters).
fn random_password() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> HeaderValue {
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::from_str(&format!("Basic {v}")).unwrap()
    }

    #[test]
    fn generates_then_reuses() {
        let dir = std::env::temp_dir().join(format!("gw-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (c, generated) = Credentials::load_or_generate(&dir).unwrap();
        assert!(generated);
        let pass = std::fs::read_to_string(dir.join(PASSWORD_FILE)).unwrap();
        assert!(pass.len() >= 22);
        assert!(c.check(Some(&basic("admin", &pass))));
        assert!(!c.check(Some(&basic("root", &pass))));
        assert!(!c.check(Some(&basic("admin", "nope"))));
        assert!(!c.check(Some(&HeaderValue::from_static("Bearer "))));
        assert!(!c.check(None));
        let (again, generated) = Credentials::load_or_generate(&dir).unwrap();
        assert!(!generated);
        assert!(again.check(Some(&basic("admin", &pass))));
        std::fs::remove_file(dir.join(USER_FILE)).unwrap();
        assert!(matches!(Credentials::load_or_generate(&dir), Err(AuthError::HalfPresent(_, _))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
