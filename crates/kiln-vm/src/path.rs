//! Validation of guest paths, shared by every backend.

use crate::VmError;

/// Checks that `path` is absolute and free of `..` and NUL, and returns it in
/// a normal form (no `.` components, no repeated or trailing `/`).
pub(crate) fn normalize(path: &str) -> Result<String, VmError> {
    let invalid = |reason| VmError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if !path.starts_with('/') {
        return Err(invalid("not absolute"));
    }
    if path.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    let mut out = String::with_capacity(path.len());
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid("contains `..`")),
            part => {
                out.push('/');
                out.push_str(part);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normal_forms() {
        assert_eq!(normalize("/a//b/./c/").ok().as_deref(), Some("/a/b/c"));
        assert_eq!(normalize("/").ok().as_deref(), Some("/"));
        assert!(normalize("a/b").is_err());
        assert!(normalize("/a/../b").is_err());
        assert!(normalize("/a\0").is_err());
    }
}
