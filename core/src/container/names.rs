//! Container names: Docker's rule for valid names and generated
//! `adjective_surname` names for containers created without `--name`.

use crate::error::{EngineError, EngineResult};

/// Adjectives of generated names.
const ADJECTIVES: &[&str] = &[
    "agile",
    "amazing",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "busy",
    "calm",
    "charming",
    "clever",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elastic",
    "elegant",
    "epic",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hopeful",
    "hungry",
    "inspiring",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "nervous",
    "nifty",
    "nostalgic",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "quirky",
    "relaxed",
    "romantic",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "wizardly",
    "wonderful",
    "youthful",
    "zealous",
    "zen",
];

/// Surnames of generated names: scientists and engineers.
const SURNAMES: &[&str] = &[
    "agnesi",
    "albattani",
    "archimedes",
    "babbage",
    "bardeen",
    "bartik",
    "bell",
    "bhabha",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brattain",
    "cannon",
    "carson",
    "cerf",
    "chandrasekhar",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hertz",
    "hopper",
    "hypatia",
    "johnson",
    "kalam",
    "kepler",
    "knuth",
    "lamarr",
    "leakey",
    "lovelace",
    "lumiere",
    "mayer",
    "mccarthy",
    "meitner",
    "mendel",
    "minsky",
    "morse",
    "newton",
    "nobel",
    "noether",
    "pare",
    "pascal",
    "pasteur",
    "perlman",
    "planck",
    "raman",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "sinoussi",
    "stonebraker",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "villani",
    "wescoff",
    "wiles",
    "williams",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

/// A random `adjective_surname`; `retry` > 0 appends a digit, as Docker does
/// when the first choices are taken.
pub fn generate(random: &[u8; 4], retry: u32) -> String {
    let a = u16::from_le_bytes([random[0], random[1]]) as usize % ADJECTIVES.len();
    let s = u16::from_le_bytes([random[2], random[3]]) as usize % SURNAMES.len();
    let mut name = format!("{}_{}", ADJECTIVES[a], SURNAMES[s]);
    if retry > 0 {
        name.push_str(&(random[0] % 10).to_string());
    }
    name
}

/// Checks a user-given name (an optional leading `/` is dropped) against
/// Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+` and returns it without the slash.
pub fn validate(name: &str) -> EngineResult<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest: Vec<char> = chars.collect();
    let rest_ok = !rest.is_empty() && rest.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(bare.to_string())
    } else {
        Err(EngineError::InvalidArgument(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_name_rule() {
        assert_eq!(validate("web").unwrap(), "web");
        assert_eq!(validate("/web-1.a_b").unwrap(), "web-1.a_b");
        for bad in ["", "a", "-web", "_web", "web!", "we b", "/", "wéb"] {
            let e = validate(bad).unwrap_err();
            assert!(e.to_string().starts_with("Invalid container name"), "{bad}: {e}");
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn generated_names_are_valid_and_vary() {
        let a = generate(&[0, 0, 0, 0], 0);
        let b = generate(&[1, 0, 2, 0], 0);
        assert_eq!(a, "agile_agnesi");
        assert_ne!(a, b);
        assert!(validate(&a).is_ok() && validate(&b).is_ok());
        let retried = generate(&[7, 0, 0, 0], 1);
        assert!(retried.ends_with('7') && validate(&retried).is_ok(), "{retried}");
    }
}
