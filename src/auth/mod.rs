//! Access tokens (docs/PROTOCOL.md 5.5): `--token` lets clients in (HTTP
//! `Authorization: Bearer T`, `/ws?token=T`, a line client's `/auth T`), and
//! `--admin-token` guards the file-descriptor diary. Tokens are compared in
//! constant time, so timing does not tell how much of a guess was right.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

/// A secret a client must present.
#[derive(Clone)]
pub struct Token(Box<[u8]>);

impl Token {
    /// Wraps the secret given on the command line.
    pub fn new(secret: &str) -> Self {
        Self(secret.as_bytes().into())
    }

    /// Whether `offered` is this token.
    pub fn matches(&self, offered: &str) -> bool {
        bool::from(self.0.ct_eq(offered.as_bytes()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Who may do what: the tokens the server was started with.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// Required from every client, when set.
    pub client: Option<Token>,
    /// Required for the diary (`/api/connections`), when set; it also lets
    /// its holder in everywhere else.
    pub admin: Option<Token>,
}

/// What a request asks for, as far as tokens are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: open to everyone (the page, the health check).
    Nothing,
    /// Chatting and reading history: the client token.
    Client,
    /// The diary of connections: the admin token.
    Admin,
}

/// Why a token was not enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No token, or a wrong one.
    Unauthorized,
    /// A valid client token where the admin token is needed.
    Forbidden,
}

/// Whether `offered` is `token` (false when there is none).
fn is(token: Option<&Token>, offered: Option<&str>) -> bool {
    matches!((token, offered), (Some(token), Some(offered)) if token.matches(offered))
}

impl Access {
    /// Whether clients must present a token before anything else.
    pub fn client_token_required(&self) -> bool {
        self.client.is_some()
    }

    /// Whether `offered` is the admin token (false when there is none).
    pub fn is_admin(&self, offered: Option<&str>) -> bool {
        is(self.admin.as_ref(), offered)
    }

    /// Decides whether `offered` is enough for `need`.
    ///
    /// # Errors
    /// The [`Denial`] to answer with.
    pub fn check(&self, need: Need, offered: Option<&str>) -> Result<(), Denial> {
        let is_client = is(self.client.as_ref(), offered);
        let client_ok = self.client.is_none() || is_client || self.is_admin(offered);
        match need {
            Need::Nothing => Ok(()),
            Need::Client if client_ok => Ok(()),
            Need::Admin if self.admin.is_none() && client_ok => Ok(()),
            Need::Admin if self.is_admin(offered) => Ok(()),
            Need::Admin if is_client => Err(Denial::Forbidden),
            _ => Err(Denial::Unauthorized),
        }
    }
}

/// The token of an `Authorization: Bearer T` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `token` parameter of a query string, if there is one.
pub fn query_token(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(client: Option<&str>, admin: Option<&str>) -> Access {
        Access {
            client: client.map(Token::new),
            admin: admin.map(Token::new),
        }
    }

    #[test]
    fn without_tokens_everything_is_open() {
        let open = access(None, None);
        assert_eq!(open.check(Need::Client, None), Ok(()));
        assert_eq!(open.check(Need::Admin, Some("anything")), Ok(()));
    }

    #[test]
    fn the_client_token_lets_clients_in() {
        let guarded = access(Some("s3cret"), None);
        assert_eq!(guarded.check(Need::Nothing, None), Ok(()));
        assert_eq!(guarded.check(Need::Client, Some("s3cret")), Ok(()));
        assert_eq!(guarded.check(Need::Admin, Some("s3cret")), Ok(()));
        assert_eq!(guarded.check(Need::Client, None), Err(Denial::Unauthorized));
        assert_eq!(
            guarded.check(Need::Client, Some("s3cre")),
            Err(Denial::Unauthorized)
        );
    }

    #[test]
    fn the_admin_token_guards_the_diary_and_opens_the_rest() {
        let guarded = access(Some("user"), Some("root"));
        assert_eq!(guarded.check(Need::Admin, Some("root")), Ok(()));
        assert_eq!(guarded.check(Need::Client, Some("root")), Ok(()));
        assert_eq!(
            guarded.check(Need::Admin, Some("user")),
            Err(Denial::Forbidden)
        );
        assert_eq!(guarded.check(Need::Admin, None), Err(Denial::Unauthorized));
        let admin_only = access(None, Some("root"));
        assert_eq!(admin_only.check(Need::Client, None), Ok(()));
        assert_eq!(
            admin_only.check(Need::Admin, Some("nope")),
            Err(Denial::Unauthorized)
        );
    }

    #[test]
    fn bearer_and_query_tokens_are_found() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        assert_eq!(query_token(Some("nick=a&token=x%20y")), Some("x y".into()));
        assert_eq!(query_token(Some("nick=a")), None);
        assert_eq!(query_token(None), None);
    }
}
