// Local stand-in for pulumi-random's provider/shim module (not served by the module proxy).
// Its module path lies under github.com/terraform-providers/terraform-provider-random, so Go's
// internal-package rule lets it import that provider's internal/provider package.
module github.com/terraform-providers/terraform-provider-random/shim

go 1.24.7
