//! `fprocess` splitting with POSIX shell-word rules and no expansion (spec §4).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("unterminated {0} quote in fprocess")]
    Unterminated(&'static str),
    #[error("fprocess ends with a lone backslash")]
    TrailingBackslash,
}

pub fn split(s: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(SplitError::Unterminated("single")),
                        Some('\'') => break,
                        Some(c) => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(SplitError::Unterminated("double")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            None => return Err(SplitError::Unterminated("double")),
                            Some('\n') => {}
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        Some(c) => word.push(c),
                    }
                }
            }
            '\\' => match chars.next() {
                None => return Err(SplitError::TrailingBackslash),
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Vec<String> {
        split(s).unwrap()
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(ok("cat"), ["cat"]);
        assert_eq!(ok("sh -c 'echo a b'"), ["sh", "-c", "echo a b"]);
        assert_eq!(ok("  a \t b\n"), ["a", "b"]);
        assert_eq!(ok(r#"x "a \"b\" \$c \n""#), ["x", r#"a "b" $c \n"#]);
        assert_eq!(ok(r"a\ b c"), ["a b", "c"]);
        assert_eq!(ok("a '' b"), ["a", "", "b"]);
        assert_eq!(ok("echo $X | wc > f"), ["echo", "$X", "|", "wc", ">", "f"]);
        assert_eq!(ok(""), Vec::<String>::new());
    }

    #[test]
    fn unterminated_quotes_fail() {
        assert_eq!(split("sh -c 'echo"), Err(SplitError::Unterminated("single")));
        assert_eq!(split("sh -c \"echo"), Err(SplitError::Unterminated("double")));
        assert_eq!(split("a\\"), Err(SplitError::TrailingBackslash));
    }
}
