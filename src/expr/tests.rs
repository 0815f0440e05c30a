use super::*;

fn p(s: &str) -> LossExpr {
    s.parse().unwrap()
}

#[test]
fn post_order_layout() {
    let e = p("mul(-1, mul(y, log(yhat)))");
    let ops: Vec<Op> = e.nodes().iter().map(|n| n.op).collect();
    assert_eq!(
        ops,
        [Op::NegOne, Op::Y, Op::Yhat, Op::Log, Op::Mul, Op::Mul]
    );
    assert_eq!(e.root(), NodeId(5));
    assert_eq!(e.children(NodeId(5)), &[NodeId(0), NodeId(4)]);
    assert_eq!(e.children(NodeId(4)), &[NodeId(1), NodeId(3)]);
    assert_eq!(e.subtree_range(NodeId(4)), 1..5);
    assert_eq!(e.height(), 3);
    assert_eq!(e.n_weights(), 5);
    assert_eq!(e.depths(), [1, 2, 3, 2, 1, 0]);
}

#[test]
fn subtree_and_replace() {
    let e = p("add(square(sub(y, yhat)), 0.5*abs(yhat))");
    let sq = e.subtree(NodeId(3));
    assert_eq!(sq.to_string(), "square(sub(y, yhat))");
    let abs = e.subtree(e.root().prev());
    assert_eq!(abs.to_string(), "0.5*abs(yhat)");
    let replaced = e.replace_subtree(NodeId(2), &p("tanh(max(y, 1))"));
    assert_eq!(
        replaced.to_string(),
        "add(square(tanh(max(y, 1))), 0.5*abs(yhat))"
    );
    let replaced = e.replace_subtree(e.root(), &p("y"));
    assert_eq!(replaced.to_string(), "y");
    assert!(!replaced.contains_y_and_yhat());
    assert!(e.contains_y_and_yhat());
}

#[test]
fn push_rejects_out_of_order_children() {
    let res = std::panic::catch_unwind(|| {
        let mut e = LossExpr::leaf(Op::Y, 1.0);
        e.push_node(Op::Yhat, &[], 1.0);
        e.push_node(Op::Add, &[NodeId(1), NodeId(0)], 1.0);
    });
    assert!(res.is_err(), "swapped children were accepted");
}

impl NodeId {
    fn prev(self) -> NodeId {
        NodeId(self.0 - 1)
    }
}
