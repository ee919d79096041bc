package main

import "testing"

func TestMergeSections(t *testing.T) {
	old := "<!-- old -->\n\n### A\n\na1\n\n### B\n\nb1\n\n"
	add := "<!-- new -->\n\n### B\n\nb2\n\n### C\n\nc2\n\n"
	want := "<!-- new -->\n\n### A\n\na1\n\n### B\n\nb2\n\n### C\n\nc2\n\n"
	if got := mergeSections(old, add); got != want {
		t.Errorf("mergeSections:\n%q\nwant\n%q", got, want)
	}
	if got := mergeSections("", add); got != add {
		t.Errorf("into an empty document:\n%q\nwant\n%q", got, add)
	}
}
