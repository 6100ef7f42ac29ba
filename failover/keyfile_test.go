package failover

import (
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestParseKeyFile(t *testing.T) {
	const secret = "sMcguyyzMSnhe9+kvSj0FnwZ1V9jsmwqYwTDC9po1dI="
	good := []struct {
		name string
		text string
		want []Key
	}{
		{"tsig-keygen output", "key \"edgeprobe\" {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret + "\";\n};\n",
			[]Key{{"edgeprobe.", dns.HmacSHA256, secret}}},
		{"clauses in the other order, unquoted, one line, upper case", `key Edge.Probe. { secret ` + secret + `; algorithm HMAC-SHA512; };`,
			[]Key{{"edge.probe.", dns.HmacSHA512, secret}}},
		{"comments of all three kinds and several keys", `# made by tsig-keygen
// two keys
key "a" { /* the
multi-line */ algorithm hmac-sha1; secret "` + secret + `"; };
key "b" { algorithm hmac-sha384; # trailing
  secret "` + secret + `"; }; // done`,
			[]Key{{"a.", dns.HmacSHA1, secret}, {"b.", dns.HmacSHA384, secret}}},
		{"sha224", `key k { algorithm hmac-sha224; secret "` + secret + `"; };`, []Key{{"k.", dns.HmacSHA224, secret}}},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKeyFile([]byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("keys %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("key %d: %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
	bad := []struct {
		name, text string
		line       int
		msg        string
	}{
		{"empty", "", 1, "no key statement"},
		{"only comments", "# nothing\n", 2, "no key statement"},
		{"md5", "key k {\n algorithm hmac-md5;\n secret \"" + secret + "\";\n};", 2, `unknown algorithm "hmac-md5"; allowed: hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512`},
		{"truncated mac", `key k { algorithm hmac-sha256-128; secret "` + secret + `"; };`, 1, "unknown algorithm"},
		{"not base64", "key k { algorithm hmac-sha256;\nsecret \"not base64!\"; };", 2, "not base64"},
		{"no secret", `key k { algorithm hmac-sha256; };`, 1, `key "k" has no secret`},
		{"no algorithm", `key k { secret "` + secret + `"; };`, 1, `key "k" has no algorithm`},
		{"two secrets", "key k { secret \"" + secret + "\";\n secret \"" + secret + "\"; algorithm hmac-sha256; };", 2, "second secret (first on line 1)"},
		{"duplicate key", "key k { algorithm hmac-sha256; secret \"" + secret + "\"; };\nkey \"K.\" { algorithm hmac-sha256; secret \"" + secret + "\"; };", 2, "declared twice (first on line 1)"},
		{"unknown clause", `key k { algorithm hmac-sha256; secret "` + secret + `"; keyid 5; };`, 1, `unknown clause "keyid"`},
		{"another statement", "options { directory \"/\"; };", 1, `"options" where a key statement belongs`},
		{"missing semicolon", `key k { algorithm hmac-sha256 secret "` + secret + `"; };`, 1, `"secret" where ";" after algorithm belongs`},
		{"missing final semicolon", `key k { algorithm hmac-sha256; secret "` + secret + `"; }`, 1, `the end of the file where ";" after the key's "}" belongs`},
		{"open comment", "key k { /* algorithm", 1, "comment /* not closed"},
		{"open string", "key \"k { algorithm", 1, "string not closed"},
		{"bad name", `key "a..b" { algorithm hmac-sha256; secret "` + secret + `"; };`, 1, "not a domain name"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeyFile([]byte(tt.text))
			var ke *KeyFileError
			if !errors.As(err, &ke) {
				t.Fatalf("error %v, want a *KeyFileError", err)
			}
			if ke.Line != tt.line || !strings.Contains(ke.Msg, tt.msg) {
				t.Fatalf("line %d: %s; want line %d: ...%s...", ke.Line, ke.Msg, tt.line, tt.msg)
			}
		})
	}
}

func TestSelectKey(t *testing.T) {
	keys := []Key{{Name: "a."}, {Name: "b."}}
	if _, err := SelectKey(keys, ""); err == nil || !strings.Contains(err.Error(), `2 keys ("a", "b"); name one with tsig_key`) {
		t.Errorf("no name among two: %v", err)
	}
	if k, err := SelectKey(keys, "B"); err != nil || k.Name != "b." {
		t.Errorf("B: %v %v", k, err)
	}
	if _, err := SelectKey(keys, "c"); err == nil || !strings.Contains(err.Error(), `no key "c"`) {
		t.Errorf("c: %v", err)
	}
}

// FuzzKeyFile: no input crashes the parser or makes it hang; what it accepts is what
// the signer can use, and parses the same when written back in tsig-keygen's form.
func FuzzKeyFile(f *testing.F) {
	for _, seed := range []string{
		"key \"edgeprobe\" {\n\talgorithm hmac-sha256;\n\tsecret \"sMcguyyzMSnhe9+kvSj0FnwZ1V9jsmwqYwTDC9po1dI=\";\n};\n",
		`key a { secret "AAAA"; algorithm hmac-sha1; }; key b { algorithm hmac-sha512; secret "AAAA"; };`,
		"# c\n// c\n/* c */ key \"x.\" { algorithm hmac-sha224; secret \"QUJD\"; };",
		`key "k\"q" { algorithm hmac-sha384; secret "QUJD"; };`,
		"key k { algorithm hmac-md5; secret \"QUJD\"; };",
		"key k { /* open",
		"key \"open",
		"options { };",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseKeyFile(data)
		if err != nil {
			var ke *KeyFileError
			if !errors.As(err, &ke) || ke.Line < 1 || ke.Line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("error %v: want a *KeyFileError with a line within the input", err)
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no keys and no error")
		}
		var again strings.Builder
		for _, k := range keys {
			if _, ok := dns.IsDomainName(k.Name); !ok || !dns.IsFqdn(k.Name) || k.Secret == "" {
				t.Fatalf("accepted an unusable key %+v", k)
			}
			alg := ""
			for name, a := range keyAlgorithms {
				if a == k.Algorithm {
					alg = name
				}
			}
			if alg == "" {
				t.Fatalf("accepted algorithm %q", k.Algorithm)
			}
			again.WriteString("key \"" + strings.ReplaceAll(strings.ReplaceAll(k.Name, `\`, `\\`), `"`, `\"`) +
				"\" {\n\talgorithm " + alg + ";\n\tsecret \"" + k.Secret + "\";\n};\n")
		}
		back, err := ParseKeyFile([]byte(again.String()))
		if err != nil || len(back) != len(keys) {
			t.Fatalf("written back %q: %v", again.String(), err)
		}
		for i := range back {
			if back[i] != keys[i] {
				t.Fatalf("round trip %+v -> %+v", keys[i], back[i])
			}
		}
	})
}
