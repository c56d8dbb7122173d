package e2e

import "testing"

// step runs one chapter of a story as a subtest named for it, so that a
// failure names the chapter (--- FAIL: TestStory/officer_files_a_request),
// and stops the story when the chapter failed: chapters share the story's
// state, so the ones after a failure would only fail in confusing ways.
//
// A chapter's t ends with the chapter, and so do its t.Cleanup and
// t.TempDir: whatever later chapters still need (processes, directories)
// is made by the story itself, outside any step, and closures the story
// shares take the chapter's t instead of capturing the story's. A chapter
// cannot run alone: -run 'TestStory/chapter' skips the chapters it
// depends on.
func step(t *testing.T, name string, chapter func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, chapter) {
		t.Fatalf("the story stops: chapter %q failed", name)
	}
}
