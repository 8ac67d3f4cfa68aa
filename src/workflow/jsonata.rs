//! The shape of a JSONata expression in an ASL field: `{% expression %}` (ASL's JSONata
//! query language), and a syntax check of the expression that catches what a reader sees at
//! a glance (unbalanced brackets, an operator with nothing on one side, an unterminated
//! string). It is not a JSONata parser: evaluation arrives with the workflow interpreter, which
//! will parse fully; until then a definition that passes here may still hold an expression
//! JSONata refuses.

/// Where a string is a JSONata template and what it says: `None` when the string is not
/// meant as one (neither opens with `{%` nor closes with `%}`), `Some(Err(why))` when it is
/// malformed, `Some(Ok(expression))` otherwise.
pub(crate) fn template(s: &str) -> Option<Result<&str, String>> {
    let opens = s.starts_with("{%");
    let closes = s.ends_with("%}");
    if !opens && !closes {
        return None;
    }
    if !opens {
        return Some(Err(
            "ends with `%}` but does not open with `{%`: a JSONata expression is written \
             `{% expression %}`"
                .into(),
        ));
    }
    if !closes || s.len() < 4 {
        return Some(Err(
            "opens with `{%` but does not close with `%}`: a JSONata expression is written \
             `{% expression %}`"
                .into(),
        ));
    }
    let inner = &s[2..s.len() - 2];
    if !inner.starts_with(char::is_whitespace) || !inner.ends_with(char::is_whitespace) {
        return Some(Err(
            "the expression is set off by a space on each side: `{% expression %}`".into(),
        ));
    }
    let expr = inner.trim();
    if expr.is_empty() {
        return Some(Err("an empty JSONata expression".into()));
    }
    let before = &inner[..inner.len() - inner.trim_start().len()];
    let after = &inner[inner.trim_end().len()..];
    if before.contains(['\n', '\r']) || after.contains(['\n', '\r']) {
        return Some(Err(
            "a line break between `{%` or `%}` and the expression: write `{% expression %}` \
             (the expression itself may span lines)"
                .into(),
        ));
    }
    Some(check_syntax(expr).map(|()| expr))
}

/// What the last token was, for telling a binary operator from a prefix one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Start, an opening bracket, a comma, a colon or a semicolon: an operand must follow.
    Open,
    /// A binary operator: an operand must follow.
    Operator,
    /// A value, a name, a closing bracket.
    Operand,
}

/// Balanced `()[]{}`, terminated strings and back-quoted names, and every binary operator
/// between two operands.
pub(crate) fn check_syntax(expr: &str) -> Result<(), String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut stack: Vec<char> = Vec::new();
    let mut last = Last::Open;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' | '\'' | '`' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != c {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(format!("an unterminated {c} string"));
                }
                if last == Last::Operand && c != '`' {
                    return Err("a string follows a value with no operator between".into());
                }
                i = j;
                last = Last::Operand;
            }
            '/' if i + 1 < chars.len() && chars[i + 1] == '*' => {
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .ok_or("an unterminated comment")?;
                i = end + 1;
            }
            '(' | '[' | '{' => {
                stack.push(c);
                last = Last::Open;
            }
            ')' | ']' | '}' => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match stack.pop() {
                    Some(open) if open == want => {}
                    Some(open) => {
                        return Err(format!("`{c}` closes `{open}`"));
                    }
                    None => return Err(format!("`{c}` closes nothing")),
                }
                if last == Last::Operator {
                    return Err(format!("an operator before `{c}` has nothing on its right"));
                }
                last = Last::Operand;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                // `$name := value`, the binding operator.
                if last != Last::Operand {
                    return Err("`:=` has nothing on its left".into());
                }
                last = Last::Operator;
                i += 1;
            }
            ',' | ';' | ':' | '?' => {
                if last != Last::Operand && c != ':' {
                    return Err(format!("`{c}` with nothing before it"));
                }
                last = Last::Open;
            }
            '+' | '*' | '/' | '%' | '=' | '<' | '>' | '!' | '&' | '.' | '-' | '~' | '|' | '^' => {
                // Multi-character operators: `!=`, `<=`, `>=`, `:=`, `~>`, `..`, `**`, `?:`.
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let len =
                    if ["!=", "<=", ">=", "~>", "..", "**", "??", "?:"].contains(&two.as_str()) {
                        2
                    } else {
                        1
                    };
                let prefix_ok = matches!(c, '-' | '*' | '^' | '|' | '%' | '.' | '~' | '!');
                // `*` and `**` are also wildcards, `%` the parent, `-` a sign, `.` a path step
                // after a value: treat them as operands where an operand is expected.
                if last != Last::Operand {
                    if !prefix_ok {
                        return Err(format!(
                            "`{two}` has nothing on its left",
                            two = &two[..len]
                        ));
                    }
                    last = if matches!(c, '*' | '%') {
                        Last::Operand
                    } else {
                        Last::Operator
                    };
                } else {
                    last = Last::Operator;
                }
                i += len - 1;
            }
            _ => {
                // A name, a number, a `$variable`: consume the word.
                let mut j = i;
                while j < chars.len()
                    && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '$' | '#' | '@'))
                {
                    j += 1;
                }
                if j == i {
                    return Err(format!("unexpected `{c}`"));
                }
                // A number's decimals and exponent.
                while j < chars.len()
                    && chars[i].is_ascii_digit()
                    && (chars[j].is_ascii_digit() || matches!(chars[j], '.' | 'e' | 'E'))
                    && !(chars[j] == '.' && chars.get(j + 1) == Some(&'.'))
                {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                let is_keyword_op = matches!(word.as_str(), "and" | "or" | "in");
                if is_keyword_op && last == Last::Operand {
                    last = Last::Operator;
                } else if last == Last::Operand {
                    return Err(format!("`{word}` follows a value with no operator between"));
                } else {
                    last = Last::Operand;
                }
                i = j - 1;
            }
        }
        i += 1;
    }
    if let Some(open) = stack.pop() {
        return Err(format!("`{open}` is never closed"));
    }
    if last == Last::Operator {
        return Err("the expression ends with an operator".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_as_step_functions_writes_them() {
        for ok in [
            "{% 1+2 %}",
            "{% $sum($states.input.numbers) %}",
            "{% $states.context.Map.Item.Value %}",
            "{% $states.input.items[price > 10].name %}",
            "{% {'a': 1, \"b\": [1, 2]} %}",
            "{% $x := 5; $x * -2 %}",
            "{% a and b or not(c) %}",
            "{% $count($states.input.items) > 0 ? 'some' : 'none' %}",
            "{% Account.Order.Product.(Price * Quantity) %}",
            "{% $states.input.a != 3 %}",
            "{% [1..5] %}",
            "{% line1\n & line2 %}",
        ] {
            assert!(
                matches!(template(ok), Some(Ok(_))),
                "{ok}: {:?}",
                template(ok)
            );
        }
        assert_eq!(template("$.plain.path"), None);
        assert_eq!(template("plain text"), None);
    }

    #[test]
    fn malformed_templates_say_what_is_wrong() {
        for (bad, why) in [
            ("10 %}", "does not open"),
            ("{% 10", "does not close"),
            ("{%10%}", "a space on each side"),
            ("{% \n10 %}", "a line break"),
            ("{% 10 + * 2 %}", "no operator between"),
            ("{% 10 + / 2 %}", "nothing on its left"),
            ("{% $sum($states.input.items.numbers %}", "never closed"),
            ("{% (1 + 2)) %}", "closes nothing"),
            ("{% [1, 2) %}", "closes `[`"),
            ("{% 'open %}", "unterminated"),
            ("{% 1 + %}", "ends with an operator"),
            ("{%  %}", "empty"),
            ("{% $a $b %}", "no operator between"),
        ] {
            match template(bad) {
                Some(Err(e)) => assert!(e.contains(why), "{bad}: {e}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
