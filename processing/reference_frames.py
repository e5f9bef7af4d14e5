"""Which frames InstructSeg's object-aware perceiver reads as reference frames for a target frame."""


def select_reference_frames(frame_index: int, num_frames: int, num_reference_frames: int = 4) -> list[int]:
    """
    The reference frames of `frame_index` in a video of `num_frames` frames, as the original evaluation loops pick
    them (InstructSeg `eval_rvos.py` / `eval_revos.py`, `get_reference_idx_inorder`), in increasing order:

    - in the middle of the video: `num_reference_frames // 2` frames before and as many after;
    - near the start (`frame_index < num_reference_frames // 2`): every earlier frame, then enough later frames to
      make `num_reference_frames`;
    - near the end (`frame_index >= num_frames - num_reference_frames // 2`): every later frame, then enough earlier
      frames to make `num_reference_frames`.

    For a video with fewer than `num_reference_frames + 1` frames the original's indices run past the ends; they are
    wrapped around the video here exactly as its Python indexing of negative positions did (past the last frame it
    would fail). `num_reference_frames = 0` gives no reference frames.
    """
    if not 0 <= frame_index < num_frames:
        raise ValueError(f"frame_index {frame_index} is outside a video of {num_frames} frames")
    if num_reference_frames == 0:
        return []
    half = num_reference_frames // 2
    if frame_index < half:
        before = list(range(frame_index))
        after = [frame_index + k for k in range(1, num_reference_frames - frame_index + 1)]
    elif frame_index >= num_frames - half:
        before = [frame_index - k for k in range(num_reference_frames - num_frames + frame_index + 1, 0, -1)]
        after = list(range(frame_index + 1, num_frames))
    else:
        before = [frame_index - k for k in range(half, 0, -1)]
        after = [frame_index + k for k in range(1, half + 1)]
    indices = before + after
    if any(index >= num_frames for index in indices):
        raise ValueError(
            f"a video of {num_frames} frames is too short for {num_reference_frames} reference frames of frame {frame_index}"
        )
    return [index % num_frames for index in indices]
