"""Operations commands that run against the local stack or real AWS alike: status, train, publish,
rollback (the target is resolved in ops.target)."""
