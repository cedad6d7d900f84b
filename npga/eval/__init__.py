"""Evaluating avatars: the self-reenactment / novel-view protocol, expression and pose error."""
