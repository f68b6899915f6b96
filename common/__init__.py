"""What both processes share: the contract's names, the GitRepository policy, logging, list+watch."""
