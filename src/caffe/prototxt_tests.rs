use super::*;
use crate::caffe::text_writer::to_text;
use crate::proto::caffe::solver_parameter::SolverMode;
use crate::testutil::shared;

/// Every `.prototxt` under `fixtures-real`, sorted.
pub(crate) fn all_prototxts() -> Option<Vec<PathBuf>> {
    let root = shared("fixtures-real")?;
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "prototxt"))
        .collect();
    v.sort();
    Some(v)
}

pub(crate) fn is_solver(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("solver"))
}

#[test]
fn every_real_prototxt_parses_and_prints_back_to_the_same_message() {
    let Some(files) = all_prototxts() else {
        return;
    };
    // 47 files at the time of writing: nets, solvers, V1 and V2, NCS and NCSDK2 models.
    assert!(
        files.len() >= 45,
        "only {} prototxt files found",
        files.len()
    );
    for f in &files {
        if is_solver(f) {
            let s = read_solver(f).unwrap_or_else(|e| panic!("{e}"));
            let again: SolverParameter = parse_text(&to_text(&s), f).unwrap();
            assert_eq!(again, s, "{}", f.display());
        } else {
            let n = read_prototxt(f).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !n.layer.is_empty() || !n.layers.is_empty(),
                "{} has no layers",
                f.display()
            );
            let again: NetParameter = parse_text(&to_text(&n), f).unwrap();
            assert_eq!(again, n, "{}", f.display());
        }
    }
}

#[test]
fn printing_reproduces_files_written_by_python_protobuf_byte_for_byte() {
    // The caffe-oracle prototxts were written by Python protobuf's text_format (gen_protos.py):
    // field-number order, two-space indents, shortest floats. Our printer must agree.
    // (deploy_v1.prototxt and solver.prototxt are left out: their fields are in a
    // hand-chosen order, e.g. `input` before `layers`.)
    for rel in [
        "fixtures-real/caffe-oracle/levi_mini/deploy.prototxt",
        "fixtures-real/caffe-oracle/levi_mini/train_val.prototxt",
    ] {
        let Some(p) = shared(rel) else {
            return;
        };
        let original = std::fs::read_to_string(&p).unwrap();
        let printed = to_text(&read_prototxt(&p).unwrap());
        assert_eq!(printed, original, "{rel}");
    }
}

#[test]
fn legal_caffe_text_forms_parse() {
    let text = r#"
# a comment line
name: 'single quoted'   # trailing comment
layers{ name: "d" type: DATA top: "data"
  include: { phase: TRAIN }
  data_param { source: "db" "_concatenated" batch_size: 50 }
}
layer {
  name: "n" type: "LRN" bottom: "data" top: "n"
  lrn_param { local_size: 5 alpha: 1. beta: .75 k: 2e0 }
  param: { lr_mult: 1 decay_mult: 0 };
}
"#;
    let n: NetParameter = parse_text(text, Path::new("inline")).unwrap();
    assert_eq!(n.name(), "single quoted");
    let v1 = &n.layers[0];
    assert_eq!(v1.include[0].phase, Some(0)); // TRAIN = 0 in caffe.proto
    assert_eq!(v1.data_param.as_ref().unwrap().source(), "db_concatenated");
    let lrn = n.layer[0].lrn_param.as_ref().unwrap();
    assert_eq!((lrn.alpha(), lrn.beta(), lrn.k()), (1.0, 0.75, 2.0));
    assert_eq!(n.layer[0].param[0].decay_mult, Some(0.0));
}

#[test]
fn the_solver_parses_with_its_values() {
    let Some(p) = shared("fixtures-real/caffe-oracle/levi_mini/solver.prototxt") else {
        return;
    };
    let s = read_solver(&p).unwrap();
    // Values from the file (and README: base_lr 0.001, step 10000, seed 1701, CPU).
    assert_eq!(s.net(), "levi_mini/train_val.prototxt");
    assert_eq!(s.base_lr(), 0.001);
    assert_eq!(s.lr_policy(), "step");
    assert_eq!((s.gamma(), s.stepsize(), s.momentum()), (0.1, 10000, 0.9));
    assert_eq!(s.weight_decay(), 0.0005);
    assert_eq!((s.test_iter.clone(), s.test_interval()), (vec![3], 10));
    assert_eq!(s.random_seed(), 1701);
    assert_eq!(s.solver_mode(), SolverMode::Cpu);
    assert_eq!(s.max_iter(), 0);
}

#[test]
fn syntax_errors_give_file_line_and_column() {
    let path = Path::new("bad.prototxt");
    // Unknown field on line 4, column 3 (counted by hand).
    let text = "name: \"x\"\nlayer {\n  name: \"a\"\n  bogus_field: 3\n}\n";
    let e = parse_text::<NetParameter>(text, path).unwrap_err();
    match &e {
        PrototxtError::Syntax { line, column, .. } => assert_eq!((*line, *column), (4, 3)),
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.starts_with("bad.prototxt:4:3: "), "{msg}");
    assert!(msg.contains("bogus_field"), "{msg}");
    // A bad enum value: the column of the value, line 2, column 31.
    let text = "name: \"x\"\nlayer { pooling_param { pool: MAXIMUM } }\n";
    let e = parse_text::<NetParameter>(text, path)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("bad.prototxt:2:31: "), "{e}");
    assert!(e.contains("MAXIMUM"), "{e}");
    // Columns count characters, not bytes: 'é' is two bytes but one column (2:19, not 2:20).
    let text = "name: \"x\"\nlayer { name: \"é\" bogus: 1 }";
    let e = parse_text::<NetParameter>(text, path)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("bad.prototxt:2:19: "), "{e}");
    // An unclosed brace: the error points at the end of the text (line 3, column 1).
    let text = "layer {\n  name: \"a\"\n";
    let e = parse_text::<NetParameter>(text, path)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("bad.prototxt:3:1: "), "{e}");
}

#[test]
fn missing_and_binary_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.prototxt");
    let e = read_prototxt(&missing).unwrap_err();
    assert!(matches!(e, PrototxtError::Io { .. }));
    assert!(e.to_string().contains("nope.prototxt"), "{e}");
    let binary = dir.path().join("model.caffemodel");
    std::fs::write(&binary, [0x0a, 0x05, 0xff, 0xfe, 0x00]).unwrap();
    let e = read_prototxt(&binary).unwrap_err().to_string();
    assert!(
        e.contains("model.caffemodel") && e.contains("not UTF-8"),
        "{e}"
    );
}

#[test]
fn line_col_counts_characters_and_clamps() {
    let text = "ab\nçd\n";
    assert_eq!(line_col(text, 0), (1, 1));
    assert_eq!(line_col(text, 3), (2, 1));
    assert_eq!(line_col(text, 5), (2, 2)); // after the 2-byte 'ç'
    assert_eq!(line_col(text, 4), (2, 1)); // inside 'ç': rounded down
    assert_eq!(line_col(text, 99), (3, 1));
}
