"""Neural architecture search: spaces (`dfnas.nas.spaces`), the architecture file
(`dfnas.nas.arch`) and cost profilers (`dfnas.nas.profile`). See docs/nas-spaces.md."""
