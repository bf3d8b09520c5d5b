package ipam

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestImportsStayLight pins what embedding ipam builds besides tabby and the
// standard library: btree and apimachinery's two tiny validation packages.
// Before, ipam imported k8s.io/apimachinery/pkg/util/validation (klog, logr,
// k8s.io/utils/net, ...) for one label-key check, and, through selector,
// apimachinery's meta/v1 (about 80 packages).
func TestImportsStayLight(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	require.NoError(t, err)
	var outside []string
	for _, dep := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dep, "github.com/tabbynet/tabby/") {
			outside = append(outside, dep)
		}
	}
	assert.ElementsMatch(t, []string{
		"github.com/google/btree",
		"k8s.io/apimachinery/pkg/api/validate/constraints",
		"k8s.io/apimachinery/pkg/api/validate/content",
	}, outside)
}
