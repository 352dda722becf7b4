// Package registries reproduces the types of github.com/rancher/wharfie/pkg/registries that K3s's containerd
// templates read (.PrivateRegistryConfig): same package name, type names and field names, so that template
// errors read as they do in K3s.
package registries

// Registry is registries.Registry: the parsed registries.yaml.
type Registry struct {
	Mirrors map[string]Mirror         `json:"mirrors" toml:"mirrors" yaml:"mirrors"`
	Configs map[string]RegistryConfig `json:"configs" toml:"configs" yaml:"configs"`
}

// Mirror is registries.Mirror.
type Mirror struct {
	Endpoints []string          `json:"endpoint" toml:"endpoint" yaml:"endpoint"`
	Rewrites  map[string]string `json:"rewrite" toml:"rewrite" yaml:"rewrite"`
}

// RegistryConfig is registries.RegistryConfig.
type RegistryConfig struct {
	Auth *AuthConfig `json:"auth" toml:"auth" yaml:"auth"`
	TLS  *TLSConfig  `json:"tls" toml:"tls" yaml:"tls"`
}

// AuthConfig is registries.AuthConfig.
type AuthConfig struct {
	Username      string `json:"username" toml:"username" yaml:"username"`
	Password      string `json:"password" toml:"password" yaml:"password"`
	Auth          string `json:"auth" toml:"auth" yaml:"auth"`
	IdentityToken string `json:"identity_token" toml:"identitytoken" yaml:"identity_token"`
}

// TLSConfig is registries.TLSConfig.
type TLSConfig struct {
	CAFile             string `json:"ca_file" toml:"ca_file" yaml:"ca_file"`
	CertFile           string `json:"cert_file" toml:"cert_file" yaml:"cert_file"`
	KeyFile            string `json:"key_file" toml:"key_file" yaml:"key_file"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify" toml:"insecure_skip_verify" yaml:"insecure_skip_verify"`
}
