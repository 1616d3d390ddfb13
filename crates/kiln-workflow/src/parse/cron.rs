//! Validation of `schedule` cron expressions: POSIX cron's five fields with
//! the `*`, `,`, `-` and `/` operators GitHub documents, plus month and
//! weekday names. `@daily`-style shortcuts are not supported by GitHub.

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 6,
        names: DAYS,
    },
];

/// Checks one cron expression; the error says what is wrong.
pub(crate) fn validate(expr: &str) -> Result<(), String> {
    if expr.trim_start().starts_with('@') {
        return Err("shortcuts like \"@daily\" are not supported; use five fields".into());
    }
    let parts: Vec<&str> = expr.split_whitespace().collect();
    if parts.len() != FIELDS.len() {
        return Err(format!("expected 5 fields, found {}", parts.len()));
    }
    for (part, field) in parts.iter().zip(&FIELDS) {
        for item in part.split(',') {
            check_item(item, field)?;
        }
    }
    Ok(())
}

fn check_item(item: &str, field: &Field) -> Result<(), String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step {
        match step.parse::<u32>() {
            Ok(n) if n >= 1 => {}
            _ => {
                return Err(format!(
                    "invalid step \"{step}\" in the {} field",
                    field.name
                ));
            }
        }
    }
    if range == "*" {
        return Ok(());
    }
    let (low, high) = match range.split_once('-') {
        Some((low, high)) => (value(low, field)?, value(high, field)?),
        None => {
            let v = value(range, field)?;
            (v, v)
        }
    };
    if low > high {
        return Err(format!(
            "range \"{range}\" in the {} field is backwards",
            field.name
        ));
    }
    Ok(())
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    let n = match field.names.iter().position(|n| *n == upper) {
        Some(i) => i as u32 + field.min,
        None => text
            .parse::<u32>()
            .map_err(|_| format!("invalid value \"{text}\" in the {} field", field.name))?,
    };
    if n < field.min || n > field.max {
        return Err(format!(
            "{} {n} is out of range {}-{}",
            field.name, field.min, field.max
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_documented_forms() {
        for ok in [
            "0 0 * * *",
            "*/15 * * * *",
            "30 5,17 * * 1-5",
            "0 3 1 JAN,jul SUN",
            "0 0 * * MON-FRI",
            "5-55/10 * * * *",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_expressions() {
        assert_eq!(
            validate("0 0 * *"),
            Err("expected 5 fields, found 4".into())
        );
        assert_eq!(
            validate("60 * * * *"),
            Err("minute 60 is out of range 0-59".into())
        );
        assert_eq!(
            validate("0 0 * * 7"),
            Err("day of week 7 is out of range 0-6".into())
        );
        assert!(validate("@daily").is_err());
        assert!(validate("*/0 * * * *").is_err());
        assert!(validate("0 0 x * *").is_err());
        assert!(validate("0 5-2 * * *").is_err());
    }
}
