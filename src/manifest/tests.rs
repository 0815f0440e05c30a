use super::*;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(Path::new("tasks/x.toml"), text)
}

const MINIMAL: &str = "[task]\nplugin = \"diabetes\"\nmodel = \"linear\"\n";

#[test]
fn defaults_fill_what_is_left_out() {
    let m = parse(MINIMAL).unwrap();
    assert_eq!(m.testing.steps, 10_000);
    assert_eq!(m.testing.seeds, [0, 1, 2, 3, 4]);
    assert_eq!(m.plugin(), "diabetes");
    assert_eq!(m.params_json(), "{}");
}

#[test]
fn errors_name_the_file_and_the_field() {
    let cases = [
        (
            format!("{MINIMAL}[testing]\nstpes = 3\n"),
            "tasks/x.toml",
            "unknown field `stpes`, expected one of `steps`",
        ),
        (
            format!("{MINIMAL}[testing]\nsteps = \"many\"\n"),
            "line 5",
            "invalid type: string \"many\"",
        ),
        (
            format!("{MINIMAL}[testing]\nbatch = -4\n"),
            "line 5",
            "batch",
        ),
        (
            format!("{MINIMAL}[testing]\nlr = 0.0\n"),
            "`testing.lr`",
            "must be a positive number",
        ),
        (
            format!("{MINIMAL}[testing]\nnesterov = true\n"),
            "`testing.nesterov`",
            "needs a non-zero momentum",
        ),
        (
            format!("{MINIMAL}[testing]\nseeds = []\n"),
            "`testing.seeds`",
            "at least one seed",
        ),
        (
            "[task]\nplugin = \"diabetes\"\n".to_string(),
            "tasks/x.toml",
            "missing field `model`",
        ),
        (
            format!("{MINIMAL}[serach]\n"),
            "tasks/x.toml",
            "unknown field `serach`",
        ),
    ];
    for (text, where_, what) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(where_) && err.contains(what),
            "{text:?}\ngave: {err}"
        );
    }
}

#[test]
fn plugin_paths_resolve_against_the_manifest() {
    let m = parse("[task]\nplugin = \"../build/libx.so\"\nmodel = \"m\"\n").unwrap();
    assert_eq!(m.plugin(), "tasks/../build/libx.so");
}
