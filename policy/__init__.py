"""The platform's CrossGuard policy pack; `policy.rules` holds its checks as pure functions."""
