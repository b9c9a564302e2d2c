//! The one redactor: masks the passwords that a connection string can put into a message or
//! a log line. Every place that shows a source URL or an error text that may quote one
//! (the source crates' "cannot connect to ...", the monitor's recent errors, the command
//! line's error line) goes through `redact`.
//!
//! Masked: the password of a `scheme://user:password@host` URL (up to the last `@` of the
//! token, so a password holding `/` or `@` is masked whole), and the value of every
//! `password=` setting (libpq key=value strings, URL query parameters), quoted or not.
//! Over-masking is fine (a message loses a detail); under-masking is not.

/// `text` with every password masked as `***`.
pub fn redact(text: &str) -> String {
    mask_password_settings(&mask_url_passwords(text))
}

/// `scheme://user:password@host...` → `scheme://user:***@host...`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The URL ends at whitespace or a quote; its user info at the last `@` in it.
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let token = &tail[..end];
        match token.rfind('@').and_then(|at| {
            let colon = token[..at].find(':')?;
            Some((colon, at))
        }) {
            Some((colon, at)) => {
                out.push_str(&token[..colon]);
                out.push_str(":***");
                out.push_str(&token[at..]);
            }
            None => out.push_str(token),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `password=secret` / `password='a secret'` → `password=***`, case-insensitively.
fn mask_password_settings(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.to_ascii_lowercase().find(KEY) {
        let start = i + KEY.len();
        out.push_str(&rest[..start]);
        out.push_str("***");
        let value = &rest[start..];
        let len = match value.strip_prefix('\'') {
            // A quoted libpq value ends at the next unescaped quote.
            Some(quoted) => {
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((j, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '\'' => {
                            end = j + 1;
                            break;
                        }
                        _ => {}
                    }
                }
                1 + end
            }
            None => value
                .find(|c: char| c.is_whitespace() || c == '&' || c == ';')
                .unwrap_or(value.len()),
        };
        rest = &value[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn url_passwords_are_masked() {
        assert_eq!(
            redact("cannot connect to postgres://repl:s3cret@db:5432/shop: refused"),
            "cannot connect to postgres://repl:***@db:5432/shop: refused"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1:3306/shop"),
            "mysql://root@127.0.0.1:3306/shop"
        );
        assert_eq!(
            redact("postgres://u:pa/ss@w@h/db?sslmode=require x"),
            "postgres://u:***@h/db?sslmode=require x"
        );
        assert_eq!(redact("mysql://u:p@["), "mysql://u:***@[");
    }

    #[test]
    fn password_settings_are_masked() {
        assert_eq!(redact("host=h password=x y=1"), "host=h password=*** y=1");
        assert_eq!(
            redact("host=h PASSWORD='a b\\' c' user=u"),
            "host=h PASSWORD=*** user=u"
        );
        assert_eq!(
            redact("mysql://u@h/db?password=x&ssl-mode=REQUIRED password=y"),
            "mysql://u@h/db?password=***&ssl-mode=REQUIRED password=***"
        );
    }
}
