use super::{run, tensor};
use crate::ir::{Op, Tensor};
use crate::ops::concat::ConcatParams;
use crate::ops::ctx::Ctx;
use crate::ops::dispatch;
use crate::ops::reshape::{FlattenParams, ReshapeParams};

/// Element (i0, i1, i2) of a 3-D row-major tensor.
fn at3(t: &Tensor, i: [usize; 3]) -> f32 {
    t.data[(i[0] * t.shape[1] + i[1]) * t.shape[2] + i[2]]
}

#[test]
fn concat_along_each_axis() {
    let a = tensor(&[2, 3, 4], 1);
    let b = tensor(&[2, 1, 4], 2);
    let got = run(&Op::Concat(ConcatParams { axis: 1 }), &[&a, &b], &[], 1).remove(0);
    assert_eq!(got.shape, vec![2, 4, 4]);
    for i in 0..2 {
        for j in 0..4 {
            for k in 0..4 {
                let want = if j < 3 {
                    at3(&a, [i, j, k])
                } else {
                    at3(&b, [i, j - 3, k])
                };
                assert_eq!(at3(&got, [i, j, k]), want);
            }
        }
    }
    let c = tensor(&[2, 3, 2], 3);
    let got = run(&Op::Concat(ConcatParams { axis: -1 }), &[&a, &c], &[], 1).remove(0);
    assert_eq!(got.shape, vec![2, 3, 6]);
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..6 {
                let want = if k < 4 {
                    at3(&a, [i, j, k])
                } else {
                    at3(&c, [i, j, k - 4])
                };
                assert_eq!(at3(&got, [i, j, k]), want);
            }
        }
    }
    let d = tensor(&[1, 3, 4], 4);
    let got = run(&Op::Concat(ConcatParams { axis: 0 }), &[&a, &d], &[], 1).remove(0);
    assert_eq!(got.shape, vec![3, 3, 4]);
    assert_eq!(&got.data[..24], &a.data[..]);
    assert_eq!(&got.data[24..], &d.data[..]);
}

#[test]
fn flatten_reshape_and_split_keep_values() {
    let x = tensor(&[2, 3, 4, 5], 5);
    let got = run(&Op::Flatten(FlattenParams::default()), &[&x], &[], 1).remove(0);
    assert_eq!((got.shape.clone(), &got.data), (vec![2, 60], &x.data));
    let r = ReshapeParams {
        dims: vec![0, -1, 10],
        ..ReshapeParams::default()
    };
    let got = run(&Op::Reshape(r), &[&x], &[], 1).remove(0);
    assert_eq!((got.shape.clone(), &got.data), (vec![2, 6, 10], &x.data));

    let mut ctx = Ctx::default();
    let tops = dispatch::forward(&Op::Split, &[&x], &[], 3, &mut ctx).unwrap();
    assert_eq!(tops.len(), 3);
    assert!(tops.iter().all(|t| t == &x));

    let mut y = x.clone();
    dispatch::forward_in_place(
        &Op::Flatten(FlattenParams {
            axis: 2,
            end_axis: 3,
        }),
        &mut y,
        &[],
        &mut ctx,
    )
    .unwrap();
    assert_eq!((y.shape, y.data), (vec![2, 3, 20], x.data));
}

#[test]
fn wrong_bottom_counts_are_errors_not_panics() {
    let x = tensor(&[2, 3], 6);
    let mut ctx = Ctx::default();
    assert!(dispatch::forward(&Op::Sigmoid, &[], &[], 1, &mut ctx).is_err());
    assert!(dispatch::forward(&Op::Sigmoid, &[&x, &x], &[], 1, &mut ctx).is_err());
    assert!(
        dispatch::forward(&Op::Concat(ConcatParams::default()), &[], &[], 1, &mut ctx).is_err()
    );
    let input = Op::Input {
        shapes: vec![vec![1]],
    };
    assert!(dispatch::forward(&input, &[], &[], 1, &mut ctx).is_err());
}
