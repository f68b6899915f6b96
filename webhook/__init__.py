"""Mutating admission webhook: GitRepository policy and provider translation; Pod identity injection."""
