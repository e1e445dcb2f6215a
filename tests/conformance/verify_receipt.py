"""An outside verifier of Cairn's audit log, sharing no code with Cairn.

It knows only the published formats: the C2SP signed-note `vkey` and note formats, the C2SP
`tlog-proof` format, RFC 9162 (Merkle tree hashing and inclusion proofs) and RFC 8032 (Ed25519,
verified here from the RFC's own algorithm with Python's standard library, so nothing else is
needed).

stdin: {"vkey": "...", "origin": "...", "entries": [{"id": "...", "body": base64, "proof": text}]}
stdout: one line per entry, "ok <id> index <i> size <n>", or a failure line; exit status 1 if
any entry fails.
"""

import base64
import hashlib
import json
import sys

# --- RFC 8032 Ed25519 verification (section 5.1.7), after the RFC's reference code. ---

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def point_add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = t1 * 2 * D * t2 % P
    dd = z1 * 2 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_mul(s, point):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = point_add(q, point)
        point = point_add(point, point)
        s >>= 1
    return q


def point_equal(a, b):
    x1, y1, z1, _ = a
    x2, y2, z2, _ = b
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P)
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def point_decompress(data):
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


G_Y = 4 * pow(5, P - 2, P) % P
G = (recover_x(G_Y, 0), G_Y, 1, recover_x(G_Y, 0) * G_Y % P)


def ed25519_verify(public, message, signature):
    if len(public) != 32 or len(signature) != 64:
        return False
    a = point_decompress(public)
    r = point_decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    return point_equal(point_mul(s, G), point_add(r, point_mul(h, a)))


# --- C2SP signed notes and vkeys. ---


def parse_vkey(vkey):
    # The name has no "+"; the base64 key may hold some.
    name, key_id, key = vkey.split("+", 2)
    key = base64.b64decode(key, validate=True)
    if key[0] != 0x01 or len(key) != 33:
        raise ValueError("not an Ed25519 vkey")
    expected = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    if expected != bytes.fromhex(key_id):
        raise ValueError("the vkey's key id does not match its key")
    return name, expected, key[1:]


def open_note(note, vkey):
    name, key_id, public = parse_vkey(vkey)
    split = note.rindex("\n\n")
    text, signatures = note[: split + 1], note[split + 2 :]
    for line in signatures.rstrip("\n").split("\n"):
        if not line.startswith("\u2014 "):
            raise ValueError("a signature line must start with an em dash")
        signer, signature = line[2:].split(" ", 1)
        signature = base64.b64decode(signature, validate=True)
        if signer == name and signature[:4] == key_id:
            if ed25519_verify(public, text.encode(), signature[4:]):
                return text
            raise ValueError("the checkpoint's signature does not verify")
    raise ValueError("the checkpoint is not signed by the key")


# --- RFC 9162 hashing and inclusion (section 2.1.3.2). ---


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf, path, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def check(entry, vkey, origin):
    body = base64.b64decode(entry["body"], validate=True)
    proof = entry["proof"]
    head, note = proof.split("\n\n", 1)
    lines = head.split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1":
        raise ValueError("not a tlog-proof")
    rest = lines[1:]
    if rest and rest[0].startswith("extra "):
        rest = rest[1:]
    if not rest[0].startswith("index "):
        raise ValueError("no index line")
    index = int(rest[0][len("index ") :])
    path = [base64.b64decode(line, validate=True) for line in rest[1:]]
    text = open_note(note, vkey)
    checkpoint = text.split("\n")
    if checkpoint[0] != origin:
        raise ValueError("the checkpoint is for another log")
    size, root = int(checkpoint[1]), base64.b64decode(checkpoint[2], validate=True)
    if not verify_inclusion(index, size, leaf_hash(body), path, root):
        raise ValueError("the inclusion proof does not lead to the signed root")
    # The entry's bytes are what was hashed: they name the entry.
    if json.loads(body)["id"] != entry["id"]:
        raise ValueError("the bytes are another entry's")
    return index, size


def main():
    request = json.load(sys.stdin)
    failed = False
    for entry in request["entries"]:
        try:
            index, size = check(entry, request["vkey"], request["origin"])
            print(f"ok {entry['id']} index {index} size {size}")
        except Exception as error:  # every failure is reported, none is fatal to the rest
            failed = True
            print(f"FAILED {entry['id']}: {error}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
