//! Is a cell ready to run? Answers Jupyter's `is_complete_request` (used by consoles to decide
//! whether Enter runs the code or starts a new line) by scanning brackets, strings and comments.

/// Whether a piece of code is ready to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Balanced: ready to run.
    Complete,
    /// An open bracket, string or block comment: the user is still typing.
    Incomplete,
    /// A closing bracket that does not match: no more typing will fix it.
    Invalid,
}

/// Scans `code` for unbalanced `()[]{}`, unterminated strings and block comments.
pub fn completeness(code: &str) -> Completeness {
    let chars: Vec<char> = code.chars().collect();
    let mut stack = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 1;
                i += 2;
                while depth > 0 {
                    match (chars.get(i), chars.get(i + 1)) {
                        (None, _) => return Completeness::Incomplete,
                        (Some('*'), Some('/')) => (depth, i) = (depth - 1, i + 1),
                        (Some('/'), Some('*')) => (depth, i) = (depth + 1, i + 1),
                        _ => {}
                    }
                    i += 1;
                }
                continue;
            }
            '"' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Completeness::Incomplete,
                        Some('\\') => i += 1,
                        Some('"') => break,
                        _ => {}
                    }
                    i += 1;
                }
            }
            '\'' => {
                // A char literal ('a', '\n') — or a lifetime ('a), which has no closing quote.
                if next == Some('\\') {
                    i += 2;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 2;
                }
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Completeness::Invalid;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if stack.is_empty() {
        Completeness::Complete
    } else {
        Completeness::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::{completeness, Completeness::*};

    #[test]
    fn brackets_strings_and_comments() {
        assert_eq!(completeness("let x = 1;"), Complete);
        assert_eq!(completeness("fn f() {"), Incomplete);
        assert_eq!(completeness("let v = vec![1, 2,"), Incomplete);
        assert_eq!(completeness("let s = \"abc"), Incomplete);
        assert_eq!(completeness("let s = \"a{b\";"), Complete);
        assert_eq!(completeness("/* open"), Incomplete);
        assert_eq!(completeness("// a { in a comment\nlet x = 1;"), Complete);
        assert_eq!(completeness("let c = '{';"), Complete);
        assert_eq!(
            completeness("fn f<'a>(x: &'a str) -> &'a str { x }"),
            Complete
        );
        assert_eq!(completeness("let x = (1];"), Invalid);
        assert_eq!(completeness("}"), Invalid);
        assert_eq!(completeness("let q = '\\'';"), Complete);
    }
}
