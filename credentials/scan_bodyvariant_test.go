package credentials

import "testing"

func TestBodyHeaderVariant(t *testing.T) {
	for name, want := range map[string]bool{
		"content_type": true, "content_length": true, "transfer_encoding": true,
		"content-type": false, "content-length": false, "transfer-encoding": false,
		"content_typf": false, "contenttype": false, "x_content_type": false, "content_type_": false,
		"transfer_encodinx": false, "": false, "authorization": false,
	} {
		if got := bodyHeaderVariant(name); got != want {
			t.Errorf("bodyHeaderVariant(%q) = %v, want %v", name, got, want)
		}
	}
}
