"""Third-party clients against the identity provider, as they would talk to Keycloak.

Usage: keycloak_clients.py <base-url>   (e.g. http://127.0.0.1:8180)

python-keycloak (KeycloakOpenID) does discovery, the password, client-credentials and
refresh grants, fetches the JWKS and verifies tokens with jwcrypto, and calls userinfo.
PyJWT's PyJWKClient finds the signing key by kid from the JWKS and verifies signature,
issuer, audience and expiry. Every check raises on failure; the last line counts them.
"""

import sys

import jwt
from keycloak import KeycloakOpenID
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakPostError

BASE = sys.argv[1].rstrip("/") + "/"
checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


cli = KeycloakOpenID(server_url=BASE, realm_name="platform", client_id="platform-cli")
machine = KeycloakOpenID(
    server_url=BASE,
    realm_name="platform",
    client_id="platform-service",
    client_secret_key="platform-service-secret",
)

# Discovery.
wk = cli.well_known()
issuer = wk["issuer"]
check(issuer == BASE + "realms/platform", f"issuer {issuer}")
for field, path in [("token_endpoint", "token"), ("jwks_uri", "certs"), ("userinfo_endpoint", "userinfo")]:
    check(wk[field] == issuer + "/protocol/openid-connect/" + path, f"{field} {wk[field]}")

# Password grant (python-keycloak asks for scope=openid by default, so an ID token comes too).
tokens = cli.token("alice", "alice")
check({"access_token", "refresh_token", "id_token"} <= tokens.keys(), f"token fields {tokens.keys()}")
access = cli.decode_token(tokens["access_token"])
check(access["preferred_username"] == "alice", "preferred_username")
check(access["realm_access"]["roles"] == ["user"], f"roles {access['realm_access']}")
check(access["aud"] == "platform-api" and access["azp"] == "platform-cli", "aud/azp")
check(access["typ"] == "Bearer" and access["iss"] == issuer, "typ/iss")
id_token = cli.decode_token(tokens["id_token"])
check(id_token["aud"] == "platform-cli" and id_token["typ"] == "ID", "id token")

# Userinfo with the access token.
info = cli.userinfo(tokens["access_token"])
check(info["preferred_username"] == "alice" and info["email"] == "alice@example.com", f"userinfo {info}")

# Refresh grant keeps the session.
refreshed = cli.refresh_token(tokens["refresh_token"])
again = cli.decode_token(refreshed["access_token"])
check(again["sid"] == access["sid"] and again["jti"] != access["jti"], "refresh keeps the session")

# A user whose password is stored as Keycloak's exported pbkdf2-sha256 hash.
bob = cli.decode_token(cli.token("bob", "bob-password")["access_token"])
check(bob["preferred_username"] == "bob", "hashed credential login")

# Wrong password: invalid_grant (400).
try:
    cli.token("alice", "wrong")
    check(False, "wrong password accepted")
except KeycloakPostError as e:
    check(e.response_code == 400 and b"invalid_grant" in e.response_body, f"wrong password: {e}")

# Client credentials for the machine client; a wrong secret is invalid_client (401).
svc = machine.token(grant_type="client_credentials")
svc_access = machine.decode_token(svc["access_token"])
check(svc_access["preferred_username"] == "service-account-platform-service", "service account")
check(sorted(svc_access["realm_access"]["roles"]) == ["admin", "user"], "service account roles")
bad = KeycloakOpenID(server_url=BASE, realm_name="platform", client_id="platform-service", client_secret_key="nope")
try:
    bad.token(grant_type="client_credentials")
    check(False, "wrong client secret accepted")
except KeycloakAuthenticationError as e:
    check(e.response_code == 401 and b"invalid_client" in e.response_body, f"wrong secret: {e}")

# JWKS through python-keycloak.
certs = cli.certs()
check(any(k["kid"] == jwt.get_unverified_header(tokens["access_token"])["kid"] for k in certs["keys"]), "kid in JWKS")

# PyJWT with PyJWKClient: key by kid, signature, issuer, audience, expiry.
jwks = jwt.PyJWKClient(wk["jwks_uri"])
for token in (tokens["access_token"], svc["access_token"]):
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="platform-api", issuer=issuer)
    check(claims["typ"] == "Bearer", "PyJWT decode")
try:
    jwt.decode(tokens["access_token"], jwks.get_signing_key_from_jwt(tokens["access_token"]).key,
               algorithms=["RS256"], audience="someone-else", issuer=issuer)
    check(False, "wrong audience accepted")
except jwt.InvalidAudienceError:
    check(True, "wrong audience")

print(f"python-keycloak and PyJWT: {checks} checks passed")
