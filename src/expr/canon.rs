pub fn structural_hash(_e: &super::LossExpr) -> u64 {
    0
}
