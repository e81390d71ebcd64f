/* "user:password" in base64, as HTTP Basic, docker configs ("auth") and
 * ECR's authorization tokens carry it: decoded and split at the first ':'
 * (a password may hold more). */
#pragma once

/* 0 with both strings (caller frees; wipe the password), -EINVAL for
 * what is not base64 of user:password (no user, no ':', a NUL inside),
 * -ENOMEM. Neither out-parameter is written on failure. */
int userpass_decode(const char *b64, char **ret_user, char **ret_pass);
