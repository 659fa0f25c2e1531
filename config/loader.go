package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix starts every environment variable pulsaga reads.
const EnvPrefix = "PULSAGA"

// Validator is a config struct that can check itself.
type Validator interface{ Validate() error }

// envAliases are well-known variables honoured besides PULSAGA_*.
var envAliases = map[string][]string{
	"pulsar.url":       {"PULSAR_URL"},
	"pulsar.admin_url": {"PULSAR_ADMIN_URL"},
	"tracing.endpoint": {"OTEL_EXPORTER_OTLP_ENDPOINT"},
}

// AddFlags registers one flag per key of cfg (a pointer to a struct holding
// its defaults), named FlagName(key), with the struct's `usage` tag as help.
func AddFlags(fs *pflag.FlagSet, cfg any) {
	for _, f := range fields(cfg) {
		name := FlagName(f.key)
		if fs.Lookup(name) != nil {
			continue
		}
		switch v := f.value.Interface().(type) {
		case time.Duration:
			fs.Duration(name, v, f.usage)
		case string:
			fs.String(name, v, f.usage)
		case bool:
			fs.Bool(name, v, f.usage)
		case int:
			fs.Int(name, v, f.usage)
		case int64:
			fs.Int64(name, v, f.usage)
		case float64:
			fs.Float64(name, v, f.usage)
		case []string:
			fs.StringSlice(name, v, f.usage)
		}
	}
}

// Load fills cfg (a pointer to a struct that already holds its defaults)
// from the YAML file (if not empty), the environment and the flags that were
// set, then validates it. Unknown keys in the file are errors that name them.
func Load(cfg Validator, file string, fs *pflag.FlagSet) error {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	known := map[string]bool{}
	for _, f := range fields(cfg) {
		known[f.key] = true
		v.SetDefault(f.key, f.value.Interface())
		names := append([]string{EnvName(f.key)}, envAliases[f.key]...)
		if err := v.BindEnv(append([]string{f.key}, names...)...); err != nil {
			return fmt.Errorf("config: bind %s: %w", f.key, err)
		}
		if fs != nil {
			if fl := fs.Lookup(FlagName(f.key)); fl != nil && fl.Changed {
				if err := v.BindPFlag(f.key, fl); err != nil {
					return fmt.Errorf("config: bind --%s: %w", fl.Name, err)
				}
			}
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("%w: read %s: %v", ErrInvalid, file, err)
		}
		var unknown []error
		for _, k := range v.AllKeys() {
			if !known[k] && !isParentKey(k, known) {
				unknown = append(unknown, &FieldError{Key: k, Value: v.Get(k), Problem: "unknown key in " + file + suggest(k, known)})
			}
		}
		if len(unknown) > 0 {
			return errors.Join(unknown...)
		}
	}
	err := v.Unmarshal(cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return cfg.Validate()
}

func isParentKey(k string, known map[string]bool) bool {
	for kk := range known {
		if strings.HasPrefix(kk, k+".") {
			return true
		}
	}
	return false
}

// suggest names the closest known key, when one is close.
func suggest(k string, known map[string]bool) string {
	best, bestD := "", 4
	keys := make([]string, 0, len(known))
	for kk := range known {
		keys = append(keys, kk)
	}
	sort.Strings(keys)
	for _, kk := range keys {
		if d := levenshtein(k, kk); d < bestD {
			best, bestD = kk, d
		}
	}
	if best == "" {
		return "; known keys: " + strings.Join(keys, ", ")
	}
	return fmt.Sprintf("; did you mean %s?", best)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

type field struct {
	key   string
	usage string
	value reflect.Value
}

// fields lists the leaf keys of a config struct, depth first.
func fields(cfg any) []field {
	var out []field
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			tag := sf.Tag.Get("mapstructure")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			fv := v.Field(i)
			if sf.Anonymous && (name == "" || strings.Contains(opts, "squash")) {
				walk(prefix, fv)
				continue
			}
			if name == "" {
				name = strings.ToLower(sf.Name)
			}
			key := name
			if prefix != "" {
				key = prefix + "." + name
			}
			if fv.Kind() == reflect.Struct && sf.Type != reflect.TypeOf(time.Time{}) {
				walk(key, fv)
				continue
			}
			out = append(out, field{key: key, usage: sf.Tag.Get("usage"), value: fv})
		}
	}
	walk("", reflect.ValueOf(cfg))
	return out
}
