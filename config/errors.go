package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The YAML decoder speaks Go ("cannot unmarshal !!str into []string",
// "field x not found in type config.Directory"). yamlError says the same
// in the words of the file: the key, what it should hold, and for an
// unknown key the one it most likely means.

var (
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (\S+) not found in type config\.(\w+)$`)
	wrongTypeRE    = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (.+)$")
	lineRE         = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// yamlError rewrites an error of decoding data.
func yamlError(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	keys, values := keysByLine(data)
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		msgs = append(msgs, rewriteYAMLError(m, keys, values))
	}
	return errors.New(strings.Join(msgs, "; "))
}

func rewriteYAMLError(m string, keys, values map[int]string) string {
	if g := unknownFieldRE.FindStringSubmatch(m); g != nil {
		out := fmt.Sprintf("line %s: unknown key %s", g[1], g[2])
		if t, ok := structTypes()[g[3]]; ok {
			if best := closest(g[2], yamlKeys(t)); best != "" {
				out += fmt.Sprintf(" (did you mean %s?)", best)
			}
		}
		return out
	}
	if g := wrongTypeRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		got := map[string]string{"seq": "a list", "map": "a mapping", "str": "a string", "int": "a number",
			"float": "a number", "bool": "true or false", "null": "nothing"}[g[2]]
		if got == "" {
			got = g[2]
		}
		if v, ok := values[line]; ok && g[2] != "seq" && g[2] != "map" {
			got += fmt.Sprintf(" (%q)", v) // the decoder cuts long values short
		}
		return fmt.Sprintf("line %d: %sexpected %s, got %s", line, keyPrefix(keys, line), expected(g[4]), got)
	}
	if g := lineRE.FindStringSubmatch(m); g != nil {
		line, _ := strconv.Atoi(g[1])
		return fmt.Sprintf("line %d: %s%s", line, keyPrefix(keys, line), g[2])
	}
	return m
}

func keyPrefix(keys map[int]string, line int) string {
	if k := keys[line]; k != "" {
		return k + ": "
	}
	return ""
}

// expected names a Go type as what a key should hold.
func expected(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "config."):
		if goType == "config.Duration" {
			return "a duration (such as 90s, 5m or 400d)"
		}
		return "a mapping"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case goType == "bool":
		return "true or false"
	case goType == "string":
		return "a string"
	}
	return goType
}

// keysByLine maps each line to the path of the key written or valued on
// it ("limits.reporters_per_domain", "directories[0].path"), and to the
// scalar value written on it.
func keysByLine(data []byte) (keys, values map[int]string) {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return nil, nil
	}
	out := map[int]string{}
	values = map[int]string{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				out[k.Line] = p
				if _, taken := out[v.Line]; !taken || v.Line != k.Line {
					out[v.Line] = p
				}
				if v.Kind == yaml.ScalarNode {
					values[v.Line] = v.Value
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				if _, taken := out[c.Line]; !taken {
					out[c.Line] = p
				}
				walk(c, p)
			}
		}
	}
	walk(&root, "")
	return out, values
}

// structTypes are the configuration's struct types by name.
func structTypes() map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || out[t.Name()] != nil || t.PkgPath() != reflect.TypeOf(Config{}).PkgPath() {
			return
		}
		out[t.Name()] = t
		for i := 0; i < t.NumField(); i++ {
			visit(t.Field(i).Type)
		}
	}
	visit(reflect.TypeOf(Config{}))
	return out
}

// yamlKeys are the keys a struct type takes.
func yamlKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// closest is the candidate nearest to s in edits, if near enough to be a
// slip (at most a third of its length, and 3).
func closest(s string, candidates []string) string {
	best, bestDist := "", min(3, max(1, len(s)/3))+1
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
