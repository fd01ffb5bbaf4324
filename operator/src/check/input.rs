//! Gathering the texts to check: files, directories (recursive) and standard input.
//!
//! This module only finds and reads bytes; turning them into objects is the engine's reader
//! (`mesh_integrity::parse_documents`), so that the operator and `check` read YAML the same way.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The name standard input goes by in messages and findings (`<stdin>:12`).
pub const STDIN_NAME: &str = "<stdin>";

/// Extensions picked up when walking a directory. A file named explicitly is read whatever its name.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// One text to parse, with the name messages use for it.
#[derive(Debug)]
pub struct Source {
    /// The path as the user wrote it (joined with the walked entries), or [`STDIN_NAME`].
    pub name: String,
    /// The UTF-8 content.
    pub text: String,
}

/// A problem that makes part of the input unusable; the CLI prints it and exits 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    /// The file (or `<stdin>`) concerned.
    pub name: String,
    /// What went wrong, without the file name.
    pub message: String,
}

impl std::fmt::Display for InputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

/// What reading found: each usable text is handed to the sink as soon as it is read (so that a
/// 100k-object tree is never in memory all at once), problems are kept. Reading goes on after a
/// problem so that one bad file is reported together with every other one.
pub struct Gathered<'a> {
    /// Receives each text, in a stable order (arguments in order, directory entries sorted).
    sink: &'a mut dyn FnMut(Source),
    /// How many texts the sink received.
    pub sources: usize,
    /// Unreadable paths, non-UTF-8 files.
    pub problems: Vec<InputProblem>,
}

impl<'a> Gathered<'a> {
    /// Nothing read yet.
    pub fn new(sink: &'a mut dyn FnMut(Source)) -> Self {
        Gathered {
            sink,
            sources: 0,
            problems: Vec::new(),
        }
    }

    fn push(&mut self, source: Source) {
        self.sources += 1;
        (self.sink)(source);
    }
}

/// Reads every path, handing each text to `sink`; `-` is standard input (read once, however
/// often it is named). Returns how many texts were read and the problems met.
pub fn gather(
    paths: &[PathBuf],
    stdin: &mut dyn Read,
    sink: &mut dyn FnMut(Source),
) -> (usize, Vec<InputProblem>) {
    let mut gathered = Gathered::new(sink);
    let mut stdin_read = false;
    // Directory loops through symlinks would otherwise never end; canonical paths detect them.
    let mut visited_dirs = HashSet::new();
    for path in paths {
        if path.as_os_str() == "-" {
            if !stdin_read {
                stdin_read = true;
                read_stdin(stdin, &mut gathered);
            }
            continue;
        }
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, &mut visited_dirs, &mut gathered),
            Ok(_) => read_file(path, &mut gathered),
            Err(err) => gathered.problems.push(InputProblem {
                name: display(path),
                message: format!("cannot read: {}", io_reason(&err)),
            }),
        }
    }
    (gathered.sources, gathered.problems)
}

/// Reads standard input whole.
fn read_stdin(stdin: &mut dyn Read, gathered: &mut Gathered) {
    let mut bytes = Vec::new();
    match stdin.read_to_end(&mut bytes) {
        Ok(_) => push_bytes(STDIN_NAME.to_string(), bytes, gathered),
        Err(err) => gathered.problems.push(InputProblem {
            name: STDIN_NAME.to_string(),
            message: format!("cannot read: {}", io_reason(&err)),
        }),
    }
}

fn walk(dir: &Path, visited: &mut HashSet<PathBuf>, gathered: &mut Gathered) {
    let canonical = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !visited.insert(canonical) {
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            gathered.problems.push(InputProblem {
                name: display(dir),
                message: format!("cannot read directory: {}", io_reason(&err)),
            });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    // read_dir's order is the filesystem's; sorting makes output and finding order reproducible.
    paths.sort();
    for path in paths {
        if is_hidden(&path) {
            // .git, editor swap files and the like are never manifests.
            continue;
        }
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(&path, visited, gathered),
            Ok(meta) if meta.is_file() && has_manifest_extension(&path) => {
                read_file(&path, gathered)
            }
            Ok(_) => {}
            // A dangling symlink inside a tree is not something the user asked for by name.
            Err(_) => {}
        }
    }
}

fn read_file(path: &Path, gathered: &mut Gathered) {
    match fs::read(path) {
        Ok(bytes) => push_bytes(display(path), bytes, gathered),
        Err(err) => gathered.problems.push(InputProblem {
            name: display(path),
            message: format!("cannot read: {}", io_reason(&err)),
        }),
    }
}

fn push_bytes(name: String, bytes: Vec<u8>, gathered: &mut Gathered) {
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            // A UTF-8 byte-order mark is legal in YAML streams but not before a JSON value.
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            gathered.push(Source { name, text });
        }
        Err(err) => {
            let offset = err.utf8_error().valid_up_to();
            let bytes = err.as_bytes();
            let (line, column) = line_column(&bytes[..offset]);
            gathered.problems.push(InputProblem {
                name: format!("{name}:{line}:{column}"),
                message: "not UTF-8 text (YAML and JSON manifests must be UTF-8)".to_string(),
            });
        }
    }
}

/// 1-based line and column of the position just after `prefix` (which is valid UTF-8).
fn line_column(prefix: &[u8]) -> (usize, usize) {
    let line = prefix.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = prefix
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&prefix[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

fn has_manifest_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| {
            EXTENSIONS
                .iter()
                .any(|known| ext.eq_ignore_ascii_case(known))
        })
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with('.'))
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The OS error without Rust's "(os error 2)" suffix, which means nothing to a user.
fn io_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let text = err.to_string();
            match text.find(" (os error") {
                Some(cut) => text[..cut].to_string(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `gather` reads, collected.
    fn collect(paths: &[PathBuf], stdin: &mut dyn Read) -> (Vec<Source>, Vec<InputProblem>) {
        let mut sources = Vec::new();
        let (count, problems) = gather(paths, stdin, &mut |source| sources.push(source));
        assert_eq!(count, sources.len());
        (sources, problems)
    }

    #[test]
    fn a_directory_is_walked_recursively_in_sorted_order_and_only_manifest_extensions_are_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        fs::create_dir_all(root.join("b/nested")).expect("mkdir");
        fs::create_dir_all(root.join(".git")).expect("mkdir");
        fs::write(root.join("b/nested/z.yml"), "z").expect("write");
        fs::write(root.join("a.json"), "a").expect("write");
        fs::write(root.join("c.YAML"), "c").expect("write");
        fs::write(root.join("notes.txt"), "not a manifest").expect("write");
        fs::write(root.join(".git/config.yaml"), "hidden").expect("write");

        let (sources, problems) = collect(&[root.to_path_buf()], &mut std::io::empty());

        let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["a", "z", "c"]);
        assert!(problems.is_empty());
    }

    #[test]
    fn a_file_named_explicitly_is_read_whatever_its_extension() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("manifest.txt");
        fs::write(&file, "kind: X").expect("write");
        let (sources, _) = collect(&[file], &mut std::io::empty());
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].text, "kind: X");
    }

    #[test]
    fn a_missing_path_is_a_problem_named_after_the_path() {
        let (sources, problems) = collect(
            &[PathBuf::from("/nonexistent/mesh.yaml")],
            &mut std::io::empty(),
        );
        assert!(sources.is_empty());
        assert_eq!(
            problems,
            [InputProblem {
                name: "/nonexistent/mesh.yaml".to_string(),
                message: "cannot read: no such file or directory".to_string()
            }]
        );
    }

    #[test]
    fn non_utf8_bytes_are_a_problem_with_their_line_and_column() {
        let mut sink = |_: Source| {};
        let mut gathered = Gathered::new(&mut sink);
        push_bytes(
            "f.yaml".to_string(),
            b"a: 1\nbb: \xff\xfe".to_vec(),
            &mut gathered,
        );
        assert_eq!(gathered.problems[0].name, "f.yaml:2:5");
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let mut texts = Vec::new();
        let mut sink = |source: Source| texts.push(source.text);
        let mut gathered = Gathered::new(&mut sink);
        push_bytes(
            "f.json".to_string(),
            "\u{feff}{}".as_bytes().to_vec(),
            &mut gathered,
        );
        assert_eq!(texts, ["{}"]);
    }

    #[test]
    fn stdin_is_read_once_even_when_named_twice() {
        let mut stdin = std::io::Cursor::new(b"kind: List".to_vec());
        let (sources, _) = collect(&[PathBuf::from("-"), PathBuf::from("-")], &mut stdin);
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].name, STDIN_NAME);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_walked_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("a.yaml"), "a").expect("write");
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).expect("symlink");
        let (sources, _) = collect(&[dir.path().to_path_buf()], &mut std::io::empty());
        assert_eq!(sources.len(), 1);
    }
}
