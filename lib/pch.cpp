// The translation unit that builds the precompiled header (pch.h) every target reuses.
