//! Who may come in: the demo accounts from configuration, their passwords stored only as
//! argon2 hashes, and the signed tokens (JWT, HS256) a login hands out.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Customer,
    Seller,
}

impl Role {
    /// The actor kind the services know it by.
    pub fn actor_kind(self) -> servicekit::ActorKind {
        match self {
            Role::Customer => servicekit::ActorKind::Customer,
            Role::Seller => servicekit::ActorKind::Seller,
        }
    }
}

/// An account: a name, a role, and the argon2 hash of its password (PHC string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub name: String,
    pub role: Role,
    pub password_hash: String,
}

pub use servicekit::Secret;

/// The PHC string of `password`, for configuration files (`minimall hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt =
        SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account name.
    pub sub: String,
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

impl Claims {
    /// The `x-actor` the services receive.
    pub fn actor(&self) -> servicekit::Actor {
        servicekit::Actor {
            kind: self.role.actor_kind(),
            id: self.sub.clone(),
        }
    }
}

pub struct Accounts {
    accounts: Vec<Account>,
    secret: Secret,
    ttl: Duration,
    /// Checked when the name is unknown, so a wrong name costs as long as a wrong password.
    decoy: String,
}

impl Accounts {
    pub fn new(accounts: Vec<Account>, secret: Secret, ttl: Duration) -> Accounts {
        let decoy = hash_password("decoy").unwrap_or_default();
        Accounts {
            accounts,
            secret,
            ttl,
            decoy,
        }
    }

    /// The account if the password is right.
    pub fn verify(&self, name: &str, password: &str) -> Option<&Account> {
        let account = self.accounts.iter().find(|a| a.name == name);
        let hash = account.map_or(self.decoy.as_str(), |a| a.password_hash.as_str());
        let matches = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        account.filter(|_| matches)
    }

    /// A signed token for the account, and when it expires.
    pub fn issue(&self, account: &Account) -> Result<(String, u64), String> {
        let exp = chrono::Utc::now().timestamp() as u64 + self.ttl.as_secs();
        let claims = Claims {
            sub: account.name.clone(),
            role: account.role,
            exp,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.secret.expose().as_bytes()),
        )
        .map(|token| (token, exp))
        .map_err(|e| e.to_string())
    }

    /// The claims of a valid, unexpired token signed with our secret.
    pub fn check(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(self.secret.expose().as_bytes()),
            &validation,
        )
        .ok()
        .map(|data| data.claims)
    }
}
